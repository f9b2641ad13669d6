"""TLS between the broker and everyone: when it is on, which names the broker certificate carries.

The broker's certificate is issued by the controller's CA, which every agent pins at enrollment, so
agents, the controller and `msspctl` verify the broker the same way (mssp.common.natstls). TLS is on
by default whenever the broker is reached over something other than loopback (`nats_tls: auto`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.ca_set import CaSet
from controller.config import Settings
from controller.domain.errors import InvalidInput
from controller.pki import CertificateAuthority
from mssp.common.natstls import (
    TlsUpgrade,
    connect_options,
    speaks_pinned_tls,
    url_host,
    wants_tls,
    with_tls_scheme,
)

log = logging.getLogger(__name__)

TLS_MODES = ("auto", "on", "off")
HANDSHAKE_TIMEOUT = 5  # seconds the broker waits for a client's TLS handshake


def is_loopback(host: str) -> bool:
    """"localhost" and 127/8, ::1; an empty or wildcard host (all interfaces) is not loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_wanted(mode: str, hosts: Iterable[str]) -> bool:
    """on/off as given; auto: on as soon as one host is not loopback."""
    if mode not in TLS_MODES:
        raise InvalidInput(f"nats_tls must be one of {', '.join(TLS_MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "on"
    return any(not is_loopback(h) for h in hosts)


@dataclass(frozen=True)
class BrokerTls:
    """The broker side: certificate files for nats.conf, and the CA clients verify it with."""

    cert_file: Path
    key_file: Path
    ca_pem: bytes

    def server_block(self) -> list[str]:
        """nats.conf `tls` block. handshake_first: no plaintext INFO, so no downgrade and no client
        that skips TLS (nats-server >= 2.10.4)."""
        q = json.dumps
        return [
            "tls: {",
            f"  cert_file: {q(str(self.cert_file))}",
            f"  key_file: {q(str(self.key_file))}",
            "  handshake_first: true",
            f"  timeout: {HANDSHAKE_TIMEOUT}",
            "}",
        ]


def issue_broker_tls(ca: CertificateAuthority | CaSet, directory: Path, hosts: Sequence[str]) -> BrokerTls:
    """Issue (or keep) the broker certificate for `hosts` in `directory` (blocking file I/O)."""
    key_file, cert_file = ca.broker_credentials(directory, broker_hosts(listen_host="", extra=hosts))
    return BrokerTls(cert_file=cert_file, key_file=key_file, ca_pem=ca.cert_pem)


def broker_hosts(
    *, listen_host: str, extra: Iterable[str], agent_urls: Iterable[str] = ()
) -> list[str]:
    """SANs of the broker certificate: loopback (the controller's own connection), the listen
    address when it is a specific one, the hosts agents are told to use, and configured extras."""
    hosts = ["localhost", "127.0.0.1", "::1", listen_host, *(url_host(u) for u in agent_urls), *extra]
    hosts = [h.strip().strip("[]") for h in hosts]
    return [h for h in dict.fromkeys(hosts) if h and h not in ("0.0.0.0", "::")]


@dataclass(frozen=True)
class ClientTls:
    """The controller's client side: whether to use TLS and the CA it pins (its own)."""

    enabled: bool
    ca_pem: bytes

    def urls(self, urls: Sequence[str]) -> list[str]:
        """URLs as clients must use them: tls:// when TLS is on."""
        return [with_tls_scheme(u) for u in urls] if self.enabled else list(urls)

    def connect_kwargs(self, urls: Sequence[str]) -> dict[str, Any]:
        """`servers` plus the TLS options for nats.connect."""
        servers, extra = connect_options(self.urls(urls), self.ca_pem)
        return {"servers": servers, **extra}


def external_tls(mode: str, urls: Sequence[str], ca_pem: bytes) -> ClientTls:
    """For a broker we do not run: tls:// URLs always mean TLS; auto decides by the URLs' hosts."""
    if wants_tls(urls) and mode == "off":
        raise InvalidInput("nats_tls is off but the NATS URL uses tls://")
    enabled = wants_tls(urls) or tls_wanted(mode, (url_host(u) for u in urls))
    return ClientTls(enabled=enabled, ca_pem=ca_pem)


def _listen_host(address: str) -> str:
    host, _, _ = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0"


def controller_tls(
    settings: Settings, ca: CertificateAuthority | CaSet
) -> tuple[ClientTls, BrokerTls | None]:
    """What `msspctl server run` does: the client side, and for the embedded broker its certificate
    (blocking file I/O). Auto looks at the listen address and at the URL agents are handed."""
    if settings.nats_url:
        return external_tls(settings.nats_tls, settings.nats_urls, ca.cert_pem), None
    listen = _listen_host(settings.nats_listen)
    agent_urls = [settings.agent_nats_url] if settings.agent_nats_url else []
    if wants_tls(agent_urls) and settings.nats_tls == "off":
        raise InvalidInput("nats_tls is off but agent_nats_url uses tls://")
    enabled = wants_tls(agent_urls) or tls_wanted(
        settings.nats_tls, [listen, *(url_host(u) for u in agent_urls)]
    )
    if not enabled:
        return ClientTls(enabled=False, ca_pem=ca.cert_pem), None
    hosts = broker_hosts(
        listen_host=listen, agent_urls=agent_urls,
        extra=[*settings.nats_cert_hosts, *([settings.advertise_host] if settings.advertise_host else [])],
    )
    broker = issue_broker_tls(ca, settings.pki_dir, hosts)
    return ClientTls(enabled=True, ca_pem=ca.cert_pem), broker


async def settle_external(tls: ClientTls, mode: str, urls: Sequence[str]) -> ClientTls:
    """Make the controller agree with the external broker it is pointed at. `msspctl nats config`
    decides `auto` by the broker's listen address (0.0.0.0: TLS first), the controller only sees
    the URL (nats://127.0.0.1: loopback, no TLS), so ask the broker itself: one that completes a
    TLS handshake under our CA gets TLS (auto), or a clear refusal (off). Never turns TLS off."""
    if tls.enabled:
        return tls
    for url in urls:
        if not await speaks_pinned_tls(url, tls.ca_pem):
            continue
        if mode == "off":
            raise InvalidInput(
                f"nats_tls is off but the NATS broker at {url} speaks TLS first (its config came from "
                "`msspctl nats config` with TLS on); set nats_tls to auto or on, or use a tls:// URL"
            )
        log.warning("the NATS broker at %s speaks TLS first; connecting with tls:// (nats_tls %s)",
                    url, mode)
        return ClientTls(enabled=True, ca_pem=tls.ca_pem)
    return tls


def late_upgrade(
    tls: ClientTls, mode: str, urls: Sequence[str], on_upgrade: Callable[[], None]
) -> TlsUpgrade:
    """For a broker that was not reachable at start: the controller's connection moves to tls://
    when the broker turns out to speak TLS first (auto only; `off` and TLS stay as they are)."""
    ca_pem = tls.ca_pem if mode == "auto" and not tls.enabled else None
    return TlsUpgrade(urls, ca_pem, "controller", on_upgrade)
