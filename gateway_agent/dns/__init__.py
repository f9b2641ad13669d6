"""DNS enforcement through a dnsmasq child: sinkholed IOC domains, category domains fed to nft sets."""
