"""What the router adds to the desired state: interfaces, never-block networks, verdict style, limits."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from gateway_agent.errors import AgentError
from gateway_agent.nft.names import marker_text
from gateway_agent.nft.validate import Network, valid_ifname
from gateway_agent.state import DesiredState

# Kept reachable whatever the IOCs say: loopback, link-local and multicast (ND, DHCP, mDNS).
INFRA_NEVER_BLOCK: tuple[str, ...] = (
    "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
    "::1/128", "fe80::/10", "ff00::/8",
)


class CompileError(AgentError, ValueError):
    """The configuration (not the state) is unusable: nothing is applied."""


@dataclass(frozen=True)
class NftConfig:
    """What the backend adds to the state: interfaces, never-block networks, verdict style."""

    lan_ifaces: tuple[str, ...] = ()
    wan_ifaces: tuple[str, ...] = ()
    never_block: tuple[Network, ...] = ()
    deny: str = "reject"  # policy deny verdict; IOCs always drop silently
    host_timeout_s: int = 3600  # idle LAN host entries leave the per-host counter sets after this
    host_set_size: int = 65536
    dns_set_timeout_s: int = 86400  # lifetime of an address dnsmasq put in a category/domain set
    dns_set_size: int = 65536
    min_prefix4: int = 8  # an IOC wider than this is refused (a /0 feed entry must not cut a site off)
    min_prefix6: int = 16

    def __post_init__(self) -> None:
        for name in (*self.lan_ifaces, *self.wan_ifaces):
            if not valid_ifname(name):
                raise CompileError(f"invalid interface name {name!r}")
        if self.deny not in ("reject", "drop"):
            raise CompileError(f"deny must be 'reject' or 'drop', not {self.deny!r}")
        for net in self.never_block:
            if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise CompileError(f"never-block entry {net!r} is not a network")
        ints = (self.host_timeout_s, self.host_set_size, self.dns_set_timeout_s, self.dns_set_size,
                self.min_prefix4, self.min_prefix6)
        if any(type(v) is not int or v < 0 for v in ints):
            raise CompileError("timeouts, sizes and prefix limits must be non-negative integers")

    def fingerprint(self) -> str:
        """Short digest of the configuration: part of the applied marker, so a change shows."""
        text = repr((self.lan_ifaces, self.wan_ifaces, sorted(str(n) for n in self.never_block), self.deny,
                     self.host_timeout_s, self.host_set_size, self.dns_set_timeout_s, self.dns_set_size,
                     self.min_prefix4, self.min_prefix6))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def never_block_networks(self) -> tuple[list[Network], list[Network]]:
        """(IPv4, IPv6) never-block networks, infrastructure ranges included, collapsed."""
        nets = [*self.never_block, *(ipaddress.ip_network(n) for n in INFRA_NEVER_BLOCK)]
        v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
        v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
        return v4, v6


def marker_for(state: DesiredState, config: NftConfig) -> str:
    """What the ``applied`` element's comment says once `state` is in force (<= 128 bytes)."""
    v = state.versions()
    alliance = v.alliance_seq if state.follows_alliance else None
    return marker_text(v.global_seq, v.tenant_seq, state.policy.version, config.fingerprint(), alliance)
