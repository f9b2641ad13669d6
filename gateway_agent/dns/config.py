"""dnsmasq as the router's DNS enforcement point: its settings and the files it reads.

What goes where, and why (dnsmasq(8), NOTES: "SIGHUP does NOT re-read the configuration file"; it
re-reads only hosts files, DHCP files and ``--servers-file``, which may hold ``server=`` lines only):

* IOC domains change often, so they live in the servers-file, re-read on SIGHUP without a restart
  and without dropping a query (the socket stays open; queries wait in its buffer):
  - ``nxdomain`` mode: ``server=/evil.test/`` (a domain with no server is answered locally:
    NXDOMAIN for it and every subdomain);
  - ``null`` mode: ``server=/evil.test/127.0.0.1#<sink_port>``, forwarding to a second, static
    dnsmasq on loopback that answers 0.0.0.0 / :: for every name (``address=/#/#``). ``address=``
    lines are not allowed in a servers-file, so this keeps IOC changes restart-free here too.
* Upstream servers are in the servers-file as well.
* Category and rule domains need ``nftset=`` lines in the main configuration: a change there
  (a policy that edits a category list) restarts dnsmasq. The new configuration is checked with
  ``dnsmasq --test`` first; the restart itself leaves a gap of a few milliseconds in which a UDP
  query is refused and retried by the client.
* Every query is logged (``log-queries=extra``) to a file in the state dir for telemetry; rotate it
  with `rotate_query_log` (copy + truncate: dnsmasq keeps appending to the same file).

Everything written into a configuration line is validated again here (domains by the controller's own
rule, set names, addresses, paths), whatever the caller checked before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway_agent.errors import AgentError
from gateway_agent.nft import FAMILY, TABLE
from gateway_agent.nft.names import family_set
from gateway_agent.nft.validate import parse_address
from mssp.common.names import valid_domain

SINKHOLE_MODES = ("nxdomain", "null")
_PATH_RE = re.compile(r"/[A-Za-z0-9_./+-]{1,4000}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SET_BASE_RE = re.compile(r"[a-z][a-z0-9_]{0,59}")
_UPSTREAM_RE = re.compile(r"(?P<addr>[0-9A-Fa-f:.]{2,45})(?:#(?P<port>[0-9]{1,5}))?")


class DnsError(AgentError):
    """dnsmasq refused a configuration or did not start; the previous configuration stays."""


def checked_path(p: Path) -> str:
    text = str(p)
    if not _PATH_RE.fullmatch(text) or "/../" in text:
        raise DnsError(f"unsafe path for a dnsmasq configuration: {text!r}")
    return text


def parse_upstream(text: str) -> str:
    """``addr`` or ``addr#port``, the address re-rendered from its parsed form."""
    m = _UPSTREAM_RE.fullmatch(text) if isinstance(text, str) else None
    addr = m and (parse_address(m["addr"], 4) or parse_address(m["addr"], 6))
    if not m or not addr:
        raise DnsError(f"invalid DNS upstream {text!r} (want an address, optionally #port)")
    if m["port"] is None:
        return addr
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise DnsError(f"invalid DNS upstream port in {text!r}")
    return f"{addr}#{port}"


@dataclass(frozen=True)
class DnsSettings:
    """Where and how the agent's dnsmasq runs."""

    directory: Path  # configuration, servers-file, pid files
    listen: tuple[str, ...] = ("127.0.0.1",)
    port: int = 53
    upstreams: tuple[str, ...] = ()
    sinkhole: str = "nxdomain"  # or "null": answer 0.0.0.0 / ::
    query_log: Path | None = None  # default: <directory>/queries.log
    # root by default: the servers-file is re-read on SIGHUP from the agent's private (0700) state
    # dir, which an unprivileged dnsmasq could not read. Point `directory` somewhere readable to
    # run it as another user.
    user: str = "root"
    cache_size: int = 10000
    max_ttl: int = 300  # caps what clients cache, so category sets see their lookups again soon
    sink_port: int = 5399
    binary: str = "dnsmasq"
    netns: str | None = None
    start_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.sinkhole not in SINKHOLE_MODES:
            raise DnsError(f"sinkhole must be one of {SINKHOLE_MODES}, not {self.sinkhole!r}")
        if not self.listen or any(parse_address(a, 4) is None and parse_address(a, 6) is None
                                  for a in self.listen):
            raise DnsError(f"listen must be IP addresses, got {self.listen!r}")
        for up in self.upstreams:
            parse_upstream(up)
        if not _USER_RE.fullmatch(self.user):
            raise DnsError(f"invalid user name {self.user!r}")
        for value in (self.port, self.sink_port):
            if type(value) is not int or not 1 <= value <= 65535:
                raise DnsError(f"invalid port {value!r}")
        for value in (self.cache_size, self.max_ttl):
            if type(value) is not int or value < 0:
                raise DnsError(f"invalid number {value!r}")
        checked_path(self.directory)
        if self.query_log is not None:
            checked_path(self.query_log)

    @property
    def log_path(self) -> Path:
        return self.query_log or self.directory / "queries.log"


@dataclass
class DnsPlan:
    """What DNS enforces: sinkholed domains (with expiry) and domains whose answers fill nft sets."""

    sinkholes: dict[str, int] = field(default_factory=dict)  # domain -> expires_at_ms, 0 = never
    nftsets: dict[str, list[str]] = field(default_factory=dict)  # domain -> set bases (+ _v4/_v6)


def render_main(settings: DnsSettings, nftsets: Mapping[str, list[str]], servers_path: Path,
                pid_path: Path) -> str:
    """The main configuration: listening, logging, the servers-file and the nftset lines."""
    lines = [
        "# Generated by mssp-agent; rewritten on policy changes. Do not edit.",
        "no-resolv",
        "no-hosts",
        "no-poll",
        "bind-interfaces",
        *(f"listen-address={parse_address(a, 4) or parse_address(a, 6)}" for a in settings.listen),
        f"port={settings.port}",
        f"user={settings.user}",
        f"pid-file={checked_path(pid_path)}",
        f"cache-size={settings.cache_size}",
        f"max-ttl={settings.max_ttl}",
        f"max-cache-ttl={settings.max_ttl}",
        "log-queries=extra",
        f"log-facility={checked_path(settings.log_path)}",
        "log-async=50",
        f"servers-file={checked_path(servers_path)}",
    ]
    for domain in sorted(nftsets):
        bases = sorted(set(nftsets[domain]))
        if not valid_domain(domain) or not bases or not all(_SET_BASE_RE.fullmatch(b) for b in bases):
            raise DnsError(f"refusing nftset entry {domain!r} -> {bases!r}")
        targets = ",".join(f"{v}#{FAMILY}#{TABLE}#{family_set(b, v)}" for b in bases for v in (4, 6))
        lines.append(f"nftset=/{domain}/{targets}")
    return "\n".join(lines) + "\n"


def render_servers(settings: DnsSettings, sinkholes: Mapping[str, int], now_ms: int) -> str:
    """The servers-file: upstreams, then one line per live sinkholed domain."""
    lines = ["# Generated by mssp-agent; re-read on SIGHUP. Do not edit."]
    lines += [f"server={parse_upstream(u)}" for u in settings.upstreams]
    target = "" if settings.sinkhole == "nxdomain" else f"127.0.0.1#{settings.sink_port}"
    for domain in sorted(sinkholes):
        expires = sinkholes[domain]
        if expires and expires <= now_ms:
            continue
        if not valid_domain(domain):
            raise DnsError(f"refusing sinkhole domain {domain!r}")
        lines.append(f"server=/{domain}/{target}")
    return "\n".join(lines) + "\n"


def render_sink(settings: DnsSettings, pid_path: Path) -> str:
    """The static null-answer instance for ``sinkhole="null"``: 0.0.0.0 / :: for every name."""
    return "\n".join([
        "# Generated by mssp-agent: answers 0.0.0.0 / :: to the main instance's sinkholed names.",
        "no-resolv",
        "no-hosts",
        "bind-interfaces",
        "listen-address=127.0.0.1",
        f"port={settings.sink_port}",
        f"user={settings.user}",
        f"pid-file={checked_path(pid_path)}",
        "address=/#/#",
    ]) + "\n"

