"""The kernel backend: nftables table ``inet mssp`` plus dnsmasq for domains.

* Full apply: one transaction (add table, delete table, recreate everything) checked with
  ``nft -c`` then applied; the kernel applies all of it or nothing, so a refused ruleset leaves the
  previous one in force. Addresses dnsmasq had put in category/domain sets are read back (small
  sets) and carried into the new table; counters are carried by the counter source.
* Delta: IOC element adds/deletes in one JSON transaction, never a rebuild. If the kernel refuses
  it (the table was changed behind our back, say) the backend falls back to a full apply.
* Fail-static: nothing is removed on close(); the table and dnsmasq outlive the agent process and
  IOC expiry keeps working through per-element kernel timeouts.
* Never-block: controller, NATS and DNS upstream addresses (hostnames resolved at the first apply,
  retried on later full applies while unresolved) are accepted before any IOC or deny rule, and
  their hostnames can never be sinkholed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import shutil
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway_agent.backends.base import ApplyError, EnforcementBackend
from gateway_agent.clock import enforcement_ms
from gateway_agent.counters import CounterSample
from gateway_agent.dns.config import DnsError, DnsPlan, DnsSettings
from gateway_agent.dns.dnsmasq import DnsmasqManager
from gateway_agent.nft.compile import compile_state
from gateway_agent.nft.config import CompileError, NftConfig, marker_for
from gateway_agent.nft.counters import NftCounterSource
from gateway_agent.nft.delta import compile_delta
from gateway_agent.nft.iocs import effective_expiry
from gateway_agent.nft.names import MARKER_SET, parse_cidr_set, set_version
from gateway_agent.nft.native import RenderError, to_native
from gateway_agent.nft.runner import NftError, NftRunner
from gateway_agent.nft.validate import Network, parse_address
from gateway_agent.refusals import Refusal, RefusalBook
from gateway_agent.state import DesiredState, StateChange
from mssp.common.names import valid_domain
from mssp.v1 import common_pb2

log = logging.getLogger("mssp.agent.nft")

ENFORCEMENT_FILE = "enforcement.json"
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?")


def endpoint_host(entry: str) -> str:
    """The host part of an address, CIDR, ``host:port``, ``[v6]:port`` or ``scheme://host:port``."""
    entry = entry.strip()
    if "://" in entry:
        return urlsplit(entry).hostname or ""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


@dataclass
class _Applied:
    config: NftConfig
    cidr_sets: set[str]
    state: DesiredState


class NftBackend(EnforcementBackend):
    name = "nft"

    def __init__(
        self,
        *,
        netns: str | None = None,
        lan_ifaces: Sequence[str] = (),
        wan_ifaces: Sequence[str] = (),
        never_block: Sequence[str] = (),
        dns: DnsSettings | None = None,
        protected_domains: Sequence[str] = (),
        deny: str = "reject",
        native_threshold: int = 10_000,
        runner: NftRunner | None = None,
    ) -> None:
        """`never_block` takes addresses, CIDRs, hostnames, host:port and URLs (NATS, gRPC).

        `native_threshold`: above this many IOC elements the transaction goes to nft in its own
        syntax (see native.to_native); below, as JSON.
        """
        self.runner = runner or NftRunner(netns)
        self.netns = netns
        self.lan_ifaces = tuple(lan_ifaces)
        self.wan_ifaces = tuple(wan_ifaces)
        self.deny = deny
        self.native_threshold = native_threshold
        self.dns = DnsmasqManager(dns) if dns is not None else None
        entries = [*never_block, *(dns.upstreams if dns else ())]
        self._never_block: set[Network] = set()
        self._unresolved: set[str] = set()
        self.protected_domains: set[str] = {d.lower().rstrip(".") for d in protected_domains}
        for entry in entries:
            host = endpoint_host(entry.split("#", 1)[0])
            try:
                self._never_block.add(ipaddress.ip_network(host, strict=False))
            except ValueError:
                if not _HOSTNAME_RE.fullmatch(host):
                    raise ValueError(f"never-block entry {entry!r} is no address or hostname") from None
                self._unresolved.add(host.rstrip("."))
                self.protected_domains.add(host.lower().rstrip("."))
        # Fails early on bad interface names or deny mode, before anything is applied.
        NftConfig(lan_ifaces=self.lan_ifaces, wan_ifaces=self.wan_ifaces, deny=deny)
        self.lock = threading.RLock()
        self.counter_source = NftCounterSource(self.runner, lock=self.lock)
        self.refusal_book = RefusalBook()  # what is in force minus what was refused
        self.applied: _Applied | None = None

    # ---- configuration -----------------------------------------------------------------------

    def _resolve(self) -> None:
        for host in sorted(self._unresolved):
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                log.warning("never-block host %s does not resolve yet: %s", host, exc)
                continue
            for info in infos:
                addr = str(info[4][0]).split("%", 1)[0]
                self._never_block.add(ipaddress.ip_network(addr))
            self._unresolved.discard(host)

    def config(self) -> NftConfig:
        self._resolve()
        try:
            return NftConfig(lan_ifaces=self.lan_ifaces, wan_ifaces=self.wan_ifaces,
                             never_block=tuple(sorted(self._never_block, key=lambda n: (n.version, str(n)))),
                             deny=self.deny)
        except CompileError as exc:
            raise ApplyError(str(exc)) from exc

    def flow_events(self) -> tuple[list[str], list[str]] | None:
        if shutil.which("conntrack") is None:
            return None
        argv = ["conntrack", "-E", "-e", "NEW,UPDATE,DESTROY", "-o", "timestamp,id"]
        netns = self.runner.netns
        return ([*(["ip", "netns", "exec", netns] if netns else []), *argv],
                [str(n) for n in self.never_block_networks])

    @property
    def never_block_networks(self) -> list[Network]:
        return sorted(self._never_block, key=lambda n: (n.version, str(n)))

    def _protected(self, domain: str) -> bool:
        """A sinkhole on this domain would cut the agent off its controller or broker."""
        return any(p == domain or p.endswith("." + domain) for p in self.protected_domains)

    def _sinkholes(self, domains: dict[str, Any], refused: list[Refusal]) -> dict[str, Any]:
        out = {}
        for domain, expires in domains.items():
            if self._protected(domain):
                if expires is not None:  # None: a removal, nothing refused
                    refused.append(Refusal("ioc", domain, "covers a controller/broker name: not sinkholed"))
                    log.warning("not sinkholing %s: it covers a controller/broker hostname", domain)
                continue
            out[domain] = expires
        return out

    # ---- EnforcementBackend ------------------------------------------------------------------

    def apply_full(self, state: DesiredState) -> None:
        with self.lock:
            config = self.config()
            compiled = compile_state(state, config, enforcement_ms())
            refused = list(compiled.rejected)
            for reason in compiled.rejected:
                log.warning("skipped: %s", reason)
            # One nft process reads the small dynamic sets: DNS-learned addresses to carry over and
            # the counter sets (the IOC sets are never listed).
            try:
                sets = self.runner.list_sets([*compiled.dns_sets, *self.counter_source.set_names()])
            except NftError:
                sets = {}
            carry = self._carry(sets, compiled.dns_sets)
            prepared = None
            if self.dns is not None:
                plan = DnsPlan(self._sinkholes(compiled.sinkholes, refused), compiled.nftsets)
                try:
                    prepared = self.dns.prepare(plan)
                except DnsError as exc:
                    raise ApplyError(f"dns: {exc}") from exc
            try:
                totals = self.counter_source.totals(sets)
            except (NftError, OSError):
                totals = None
            try:
                if compiled.element_count > self.native_threshold:
                    self.runner.apply_text(to_native(compiled, carry))
                else:
                    self.runner.apply_json(compiled.to_json(carry), check_first=True)
            except (NftError, RenderError) as exc:
                raise ApplyError(f"nft refused the ruleset: {exc}") from exc
            if totals is not None:
                self.counter_source.monotonic.rebase(totals)
            self.applied = _Applied(config, set(compiled.cidr_sets), state)
            self.refusal_book.replace(refused)
            self.counter_source.configure(rule_names=compiled.rule_names, categories=compiled.categories,
                                          ioc_lookup=self._ioc_value)
            if prepared is not None and self.dns is not None:
                try:
                    self.dns.commit(prepared)
                except (DnsError, OSError) as exc:
                    raise ApplyError(f"dns: {exc}") from exc
            log.info("nft: applied %s (%d IOC elements, %d rules)", compiled.marker, compiled.element_count,
                     len(state.policy.rules))

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        if change.full:
            self.apply_full(state)
            return
        with self.lock:
            applied = self.applied
            if applied is None:
                self.apply_full(state)
                return
            now = enforcement_ms()
            delta = compile_delta(state, change, applied.config, now, applied.cidr_sets)
            for reason in delta.rejected:
                log.warning("skipped: %s", reason)
            try:
                self.runner.apply_json(delta.doc, check_first=False)
            except NftError as exc:
                log.warning("nft refused an IOC delta (%s); applying the whole state", exc)
                self.apply_full(state)
                return
            applied.cidr_sets |= delta.new_cidr_sets
            applied.state = state
            keys = {(i.type, i.value) for i in (*change.added, *change.removed)}
            live = {v for t, v in keys if effective_expiry(state, (t, v), now) is not None}
            refused = [r for r in delta.rejected if r.value in live]  # a removed bad IOC is no refusal
            sinkholes = self._sinkholes(dict(delta.domains), refused) if self.dns is not None else {}
            self.refusal_book.update_iocs({v for _, v in keys}, refused)
            if delta.domains and self.dns is not None:
                try:
                    self.dns.update_sinkholes(sinkholes)
                except (DnsError, OSError) as exc:
                    raise ApplyError(f"dns: {exc}") from exc

    def verify(self, state: DesiredState) -> bool:
        """Cheap read-back: the marker element names the applied versions and configuration."""
        with self.lock:
            config = self.applied.config if self.applied else self.config()
            try:
                sets = self.runner.list_sets([MARKER_SET])
            except NftError:
                return False
            elems = sets.get(MARKER_SET, {}).get("elem", [])
            comments = [e["elem"].get("comment") for e in elems
                        if isinstance(e, dict) and isinstance(e.get("elem"), dict)]
            if comments != [marker_for(state, config)]:
                return False
            return self.dns is None or self.dns.pid is not None

    def refusals(self) -> tuple[Refusal, ...]:
        return self.refusal_book.current

    def close(self) -> None:
        """Fail-static: the ruleset and dnsmasq stay in force; only the DNS expiry timer stops."""
        if self.dns is not None:
            self.dns.close()

    def remove(self) -> None:
        """Take enforcement down (uninstall, tests): delete the table, stop dnsmasq."""
        with self.lock:
            if self.dns is not None:
                self.dns.stop()
            self.runner.delete_table()
            self.applied = None

    # ---- telemetry ---------------------------------------------------------------------------

    def read_counters(self) -> list[CounterSample]:
        return self.counter_source.read_counters()

    def dns_query_log(self) -> Path | None:
        return self.dns.settings.query_log if self.dns is not None else None

    def ioc_hits(self) -> dict[tuple[str, str], int]:
        return self.counter_source.ioc_hits()

    def _ioc_value(self, address: str) -> str:
        """The IOC an address hit: the single-address IOC, else the longest CIDR IOC holding it."""
        applied = self.applied
        if applied is None:
            return address
        version = 4 if "." in address and ":" not in address else 6
        single = common_pb2.IOC_TYPE_IPV4 if version == 4 else common_pb2.IOC_TYPE_IPV6
        cidr = common_pb2.IOC_TYPE_CIDR4 if version == 4 else common_pb2.IOC_TYPE_CIDR6
        channels = list(applied.state.channels.values())
        if any((single, address) in ch.iocs for ch in channels):
            return address
        cidr_sets = [parse_cidr_set(name) for name in applied.cidr_sets]
        lengths = sorted((p[1] for p in cidr_sets if p is not None and p[0] == version), reverse=True)
        for length in lengths:
            net = ipaddress.ip_network(f"{address}/{length}", strict=False)
            key = (cidr, f"{net.network_address}/{length}")
            if any(key in ch.iocs for ch in channels):
                return key[1]
        return address

    # ---- carry-over of DNS-learned addresses -------------------------------------------------

    @staticmethod
    def _carry(sets: dict[str, dict[str, Any]], names: list[str]) -> dict[str, list[tuple[str, int]]]:
        """Addresses dnsmasq put in the category/domain sets, with their remaining seconds."""
        out: dict[str, list[tuple[str, int]]] = {}
        for name in names:
            body = sets.get(name, {})
            version = set_version(name)
            for elem in body.get("elem", []):
                if isinstance(elem, dict) and isinstance(elem.get("elem"), dict):
                    val, expires = elem["elem"].get("val"), elem["elem"].get("expires", 0)
                else:
                    val, expires = elem, 0
                addr = parse_address(val, version)
                if addr is not None and type(expires) is int and expires > 0:
                    out.setdefault(name, []).append((addr, expires))
        return out


# ---- construction from the agent's state dir -----------------------------------------------------


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{ENFORCEMENT_FILE}: {key} must be a list of strings")
    return value


def make_nft_backend(state_dir: Path) -> NftBackend:
    """The agent's nft backend: never-block from the enrollment, options from enforcement.json.

    enforcement.json (optional; written by provisioning):
    ``{"lan_ifaces": ["br-lan"], "wan_ifaces": ["wan"], "never_block": [...], "deny": "reject",
    "dns": {"listen": ["192.168.1.1"], "port": 53, "upstreams": ["9.9.9.9"], "sinkhole": "nxdomain"}}``.
    Without a "dns" section no dnsmasq is started (a router's own DNS service may own port 53).
    """
    from gateway_agent.identity import AgentIdentity

    identity = AgentIdentity.load(state_dir)
    path = state_dir / ENFORCEMENT_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
    # ioc_budget is the agent's (gateway_agent/budget.py), not the backend's
    unknown = set(data) - {"lan_ifaces", "wan_ifaces", "never_block", "deny", "dns", "native_threshold",
                           "ioc_budget"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    dns = None
    if data.get("dns"):
        d = data["dns"]
        if not isinstance(d, dict):
            raise ValueError(f"{path}: dns must be an object")
        allowed = {"listen", "port", "upstreams", "sinkhole", "user", "cache_size", "max_ttl", "sink_port"}
        if set(d) - allowed:
            raise ValueError(f"{path}: unknown dns keys {sorted(set(d) - allowed)}")
        try:
            dns = DnsSettings(directory=state_dir / "dns", query_log=state_dir / "dns" / "queries.log",
                              **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (DnsError, TypeError) as exc:
            raise ValueError(f"{path}: dns: {exc}") from exc
    controller_names = [identity.controller, identity.gateway_endpoint, *identity.nats_urls]
    protected = [h for h in (endpoint_host(e) for e in controller_names) if valid_domain(h.lower())]
    return NftBackend(
        lan_ifaces=_strings(data, "lan_ifaces"),
        wan_ifaces=_strings(data, "wan_ifaces"),
        never_block=[*controller_names, *_strings(data, "never_block")],
        dns=dns,
        protected_domains=protected,
        deny=str(data.get("deny", "reject")),
        native_threshold=int(data.get("native_threshold", 10_000)),
    )
