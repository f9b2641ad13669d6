"""Desired state -> one atomic nft transaction for table ``inet mssp`` (pure: no I/O, no clock).

The document is data (libnftables-json), never nft syntax pasted from strings. Every value that
comes from a policy or an IOC is validated before it enters the document: addresses through the
C address parser (``inet_pton``, which takes nothing but an address) and re-rendered from the
parsed bytes, rule CIDRs with ``ipaddress``, rule names and domains with the controller's own rules
(mssp.common.names). Anything else is skipped and reported in ``Compiled.rejected`` (the agent's
status carries it to `fleet status`); a rule whose match would widen by skipping a
value (all its CIDRs invalid, say) is skipped whole.

Layout of the table (fixed order, so the same state always yields the same ruleset):

* ``filter_forward`` (hook forward) and ``filter_output`` (hook output) send egress packets
  (original direction, optionally only LAN -> WAN interfaces) to ``egress``: never-block set
  accepted first, then IOC sets (drop), then the policy rules in order, then the default verdict.
* ``account_forward`` (hook forward, after the filter) counts what was let out: bytes per LAN
  host, new flows per host, bytes per category per host (dynamic sets with per-element counters).
* IOC single addresses live in hash sets ``ioc_v4``/``ioc_v6``; IOC CIDRs in one hash set per
  prefix length (``ioc_cidr4_p24`` matched as ``ip daddr & 255.255.255.0``). Every element has its
  own kernel timeout, so an IOC stops blocking at its expiry even while the agent is down, nested
  CIDRs keep their own expiries (an interval set with auto-merge fuses them under one timeout),
  and a delta is an O(1) element add/delete (nft 1.0.6 reads a whole interval set back on every
  element change).
* Every verdict increments a named counter: ``rule_<index>``, ``default``, ``never_block``, one per
  IOC set kind and one per category (counters.py reads them over netlink, see why there).
* ``applied`` holds one element whose comment names the applied versions: verify() reads only that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway_agent.nft import FAMILY, TABLE, names
from gateway_agent.nft.config import NftConfig, marker_for
from gateway_agent.nft.expr import (
    Json,
    add,
    addr_type,
    count,
    ct,
    daddr,
    elements,
    in_set,
    ioc_elem,
    marker_element,
    mask_text,
    match,
    meta,
    net_elem,
    nft_set,
    payload,
    rule,
    saddr,
    update,
)
from gateway_agent.nft.iocs import collect_iocs
from gateway_agent.nft.policy import PolicyCompiler
from gateway_agent.nft.validate import parse_address
from gateway_agent.refusals import Refusal
from gateway_agent.state import DesiredState
from mssp.v1 import common_pb2


@dataclass
class Compiled:
    """One full transaction, kept in parts so the big element lists can be rendered cheaply."""

    head: list[Json]  # table, counters, sets, chains
    static_elements: list[Json]  # never-block ranges, applied marker
    rules: list[Json]
    ioc_elements: dict[str, dict[str, int]]  # set name -> element text -> expires_at_ms (0 = never)
    now_ms: int
    marker: str
    categories: list[str]
    dns_sets: list[str]  # set names dnsmasq fills (category/domain x v4/v6): their contents are carried over
    nftsets: dict[str, list[str]]  # domain -> set base names (dnsmasq adds _v4/_v6)
    sinkholes: dict[str, int]  # domain -> expires_at_ms (0 = never)
    rule_names: dict[str, str]  # rule counter (names.rule_counter) -> policy rule name
    cidr_sets: set[str]
    dns_set_timeout_s: int
    rejected: list[Refusal] = field(default_factory=list)

    @property
    def element_count(self) -> int:
        return sum(len(v) for v in self.ioc_elements.values())

    def carried_elements(self, carry: Mapping[str, Iterable[tuple[str, int]]] | None) -> list[Json]:
        """Addresses dnsmasq had put in category/domain sets, re-added with their remaining lifetime."""
        out: list[Json] = []
        for name in self.dns_sets:
            version = names.set_version(name)
            elems = []
            for text, expires_s in sorted((carry or {}).get(name, ())):
                addr = parse_address(text, version)
                if addr is None or type(expires_s) is not int or expires_s <= 0:
                    continue
                elems.append({"elem": {"val": addr, "timeout": self.dns_set_timeout_s,
                                       "expires": min(expires_s, self.dns_set_timeout_s)}})
            if elems:
                out.append(elements(name, elems))
        return out

    def ioc_element_commands(self) -> list[Json]:
        return [
            elements(name, [ioc_elem(text, exp, self.now_ms) for text, exp in sorted(elems.items())])
            for name, elems in sorted(self.ioc_elements.items())
            if elems
        ]

    def to_json(self, carry: Mapping[str, Iterable[tuple[str, int]]] | None = None) -> Json:
        """The whole transaction as one libnftables JSON document."""
        commands = [*self.head, *self.static_elements, *self.ioc_element_commands(),
                    *self.carried_elements(carry), *self.rules]
        return {"nftables": commands}


def _cidr_rule(name: str) -> Json:
    version, length = _cidr_parts(name)
    left = daddr(version)
    if length != (32 if version == 4 else 128):
        left = {"&": [left, mask_text(version, length)]}
    return rule(names.CHAIN_IOC_CIDR, [
        match(left, in_set(name)),
        *count(names.ioc_cidr_counter(version)),
        update(names.ioc_hits_set(version), {"concat": [saddr(version), daddr(version)]}),
        {"drop": None},
    ])


def _cidr_parts(name: str) -> tuple[int, int]:
    parts = names.parse_cidr_set(name)
    if parts is None:
        raise ValueError(f"{name!r} is no CIDR IOC set")
    return parts


def _cidr_sort_key(name: str) -> tuple[int, int]:
    version, length = _cidr_parts(name)
    return version, -length


def cidr_set_commands(name: str) -> tuple[Json, Json]:
    """The set and the rule for one CIDR prefix length (also used by a delta that adds one)."""
    version, _ = _cidr_parts(name)
    return nft_set(name, addr_type(version), flags=["timeout"]), _cidr_rule(name)


def _chain(name: str, hook: str | None = None, prio: int = 0) -> Json:
    if hook is None:
        return add("chain", {"name": name})
    return add("chain", {"name": name, "type": "filter", "hook": hook, "prio": prio, "policy": "accept"})


def compile_state(state: DesiredState, config: NftConfig, now_ms: int) -> Compiled:
    """The whole table for `state` at time `now_ms` as one transaction: add, delete, recreate."""
    rejected: list[Refusal] = []
    ioc_sets, sinkholes = collect_iocs(state, config, now_ms, rejected)
    c = PolicyCompiler(config, rejected)
    policy = state.policy
    categories = c.categories(policy)
    domain_sets: dict[str, list[str]] = {}
    policy_rules, rule_names = c.policy_rules(policy, categories, domain_sets)
    cidr_sets = sorted((s for s in ioc_sets if names.parse_cidr_set(s) is not None), key=_cidr_sort_key)
    cfg = config

    head: list[Json] = [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
    ]
    counters = [names.VERDICT_DEFAULT, names.VERDICT_NEVER_BLOCK, *names.IOC_SET_NAMES,
                *(names.category_base(cat) for cat in categories),
                *(names.rule_counter(i) for i in range(len(policy.rules))
                  if names.rule_counter(i) in rule_names)]
    head += [add("counter", {"name": name}) for name in counters]

    head += [
        nft_set(names.MARKER_SET, "mark"),
        *(nft_set(names.never_block_set(v), addr_type(v), flags=["interval"]) for v in (4, 6)),
        *(nft_set(names.ioc_set(v), addr_type(v), flags=["timeout"]) for v in (4, 6)),
        *(cidr_set_commands(name)[0] for name in cidr_sets),
    ]
    for version in (4, 6):
        addr = addr_type(version)
        per_host = {"flags": ["timeout"], "timeout": cfg.host_timeout_s, "size": cfg.host_set_size,
                    "counter": True}
        head += [
            nft_set(names.ioc_hits_set(version), [addr, addr], **per_host),
            nft_set(names.host_set(version), addr, **per_host),
            nft_set(names.flows_set(version), addr, **per_host),
        ]
    dns_sets: list[str] = []
    for name in categories:
        for version in (4, 6):
            addr = addr_type(version)
            head += [
                nft_set(names.category_set(name, version), addr, flags=["timeout"],
                        timeout=cfg.dns_set_timeout_s, size=cfg.dns_set_size),
                nft_set(names.category_host_set(name, version), addr, flags=["timeout"],
                        timeout=cfg.host_timeout_s, size=cfg.host_set_size, counter=True),
            ]
            dns_sets.append(names.category_set(name, version))
    for base in sorted(domain_sets):
        for version in (4, 6):
            head.append(nft_set(names.family_set(base, version), addr_type(version), flags=["timeout"],
                                timeout=cfg.dns_set_timeout_s, size=cfg.dns_set_size))
            dns_sets.append(names.family_set(base, version))

    head += [
        _chain(names.CHAIN_FILTER_FORWARD, "forward"),
        _chain(names.CHAIN_FILTER_OUTPUT, "output"),
        _chain(names.CHAIN_ACCOUNT_FORWARD, "forward", prio=10),
        _chain(names.CHAIN_EGRESS),
        _chain(names.CHAIN_ROUTER_EGRESS),
        _chain(names.CHAIN_IOC_CIDR),
        _chain(names.CHAIN_LAN_ACCOUNT),
    ]

    nb4, nb6 = config.never_block_networks()
    marker = marker_for(state, config)
    static_elements = [
        elements(names.never_block_set(4), [net_elem(net) for net in nb4]),
        elements(names.never_block_set(6), [net_elem(net) for net in nb6]),
        marker_element(marker),
    ]

    def gate(output: bool) -> list[Json]:
        expr: list[Json] = []
        if cfg.lan_ifaces and not output:
            expr.append(match(meta("iifname"), {"set": list(cfg.lan_ifaces)}))
        if cfg.wan_ifaces:
            expr.append(match(meta("oifname"), {"set": list(cfg.wan_ifaces)}))
        expr.append(match(ct("direction"), "original"))
        return expr

    def jump(chain: str) -> Json:
        return {"jump": {"target": chain}}

    rules: list[Json] = [
        rule(names.CHAIN_FILTER_FORWARD, [*gate(False), jump(names.CHAIN_EGRESS)]),
        rule(names.CHAIN_FILTER_OUTPUT, [*gate(True), jump(names.CHAIN_ROUTER_EGRESS)]),
        rule(names.CHAIN_ROUTER_EGRESS, [
            match(payload("icmpv6", "type"),
                  {"set": ["nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert"]}),
            {"accept": None},
        ]),
        rule(names.CHAIN_ROUTER_EGRESS, [match(payload("udp", "dport"), {"set": [67, 547]}),
                                         {"accept": None}]),
        rule(names.CHAIN_ROUTER_EGRESS, [jump(names.CHAIN_EGRESS)]),
    ]
    for version in (4, 6):
        rules.append(rule(names.CHAIN_EGRESS, [match(daddr(version), in_set(names.never_block_set(version))),
                                           *count(names.VERDICT_NEVER_BLOCK), {"accept": None}]))
    for version in (4, 6):
        rules.append(rule(names.CHAIN_EGRESS, [
            match(daddr(version), in_set(names.ioc_set(version))),
            *count(names.ioc_set(version)),
            update(names.ioc_hits_set(version), {"concat": [saddr(version), daddr(version)]}),
            {"drop": None},
        ]))
    rules.append(rule(names.CHAIN_EGRESS, [jump(names.CHAIN_IOC_CIDR)]))
    rules += policy_rules
    default = [c.deny_verdict()] if policy.default_action == common_pb2.ACTION_DENY else [{"accept": None}]
    rules.append(rule(names.CHAIN_EGRESS, [*count(names.VERDICT_DEFAULT), *default]))
    rules += [_cidr_rule(name) for name in cidr_sets]

    rules.append(rule(names.CHAIN_ACCOUNT_FORWARD, [*gate(False), jump(names.CHAIN_LAN_ACCOUNT)]))
    for version in (4, 6):
        rules.append(rule(names.CHAIN_LAN_ACCOUNT, [update(names.host_set(version), saddr(version))]))
    for version in (4, 6):
        rules.append(rule(names.CHAIN_LAN_ACCOUNT, [match(ct("state"), "new", op="in"),
                                                update(names.flows_set(version), saddr(version))]))
    for name in categories:
        for version in (4, 6):
            rules.append(rule(names.CHAIN_LAN_ACCOUNT, [
                match(daddr(version), in_set(names.category_set(name, version))),
                {"counter": names.category_base(name)},
                update(names.category_host_set(name, version), saddr(version)),
            ]))

    nftsets = domain_targets({names.category_base(name): domains for name, domains in categories.items()}
                             | domain_sets)
    return Compiled(
        head=head,
        static_elements=static_elements,
        rules=rules,
        ioc_elements=dict(ioc_sets.items()),
        now_ms=now_ms,
        marker=marker,
        categories=list(categories),
        dns_sets=dns_sets,
        nftsets=nftsets,
        sinkholes=dict(sorted(sinkholes.items())),
        rule_names=rule_names,
        cidr_sets=set(cidr_sets),
        dns_set_timeout_s=cfg.dns_set_timeout_s,
        rejected=rejected,
    )


def domain_targets(lists: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """domain -> every set base whose list holds the domain or one of its parents.

    dnsmasq applies only the most specific ``nftset=`` match for a name, so a listed subdomain
    must also name the sets of its listed parents (``drive.google.com`` under a ``google.com``
    entry) and a domain in two lists must be one line naming both.
    """
    direct: dict[str, set[str]] = {}
    for base, domains in lists.items():
        for d in domains:
            direct.setdefault(d, set()).add(base)
    out: dict[str, list[str]] = {}
    for d in sorted(direct):
        targets = set(direct[d])
        labels = d.split(".")
        for i in range(1, len(labels) - 1):
            targets |= direct.get(".".join(labels[i:]), set())
        out[d] = sorted(targets)
    return out
