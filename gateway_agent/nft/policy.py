"""A policy bundle's categories and rules as egress-chain rules, skipping what cannot be enforced.

A value that fails validation is skipped and refused; a rule whose match would widen by skipping
a value (all its CIDRs invalid, say) is skipped whole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from gateway_agent.nft.config import NftConfig
from gateway_agent.nft.expr import Json, count, daddr, in_set, match, meta, net_elem, payload, rule
from gateway_agent.nft.names import CHAIN_EGRESS, category_set, domain_base, family_set, rule_counter
from gateway_agent.nft.validate import Network, valid_category
from gateway_agent.refusals import Refusal
from mssp.common.categories import BUILTIN_CATEGORIES
from mssp.common.names import RULE_NAME_HELP, valid_domain, valid_rule_name
from mssp.v1 import common_pb2


class PolicyCompiler:
    def __init__(self, config: NftConfig, rejected: list[Refusal]) -> None:
        self.config = config
        self.rejected = rejected

    def reject(self, what: str, value: object, why: str) -> None:
        """`what`: "category ..." or "rule ...": its first word is the refusal's kind."""
        kind, _, where = what.partition(" ")
        self.rejected.append(Refusal(kind, str(value), f"{why} (in {what})" if where else why))

    def categories(self, policy: common_pb2.PolicyBundle) -> dict[str, list[str]]:
        cats: dict[str, set[str]] = {name: set(domains) for name, domains in BUILTIN_CATEGORIES.items()}
        for name in sorted(policy.categories):
            if not valid_category(name):
                self.reject("category", name, "name must match [a-z][a-z0-9_]{0,31}")
                continue
            target = cats.setdefault(name, set())
            for domain in policy.categories[name].domains:
                if valid_domain(domain):
                    target.add(domain)
                else:
                    self.reject(f"category {name} domain", domain, "not a canonical domain name")
        for r in policy.rules:
            for name in r.categories:
                if valid_category(name) and name not in cats:
                    cats[name] = set()
                    self.reject(f"rule {r.name} category", name, "unknown category: matches nothing")
        return {name: sorted(cats[name]) for name in sorted(cats)}

    def deny_verdict(self) -> Json:
        if self.config.deny == "drop":
            return {"drop": None}
        return {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}

    def verdict(self, action: int) -> list[Json]:
        if action == common_pb2.ACTION_DENY:
            return [self.deny_verdict()]
        if action == common_pb2.ACTION_ALLOW:
            return [{"accept": None}]
        return []  # ALERT: count and go on

    def policy_rules(self, policy: common_pb2.PolicyBundle, categories: Mapping[str, list[str]],
                     domain_sets: dict[str, list[str]]) -> tuple[list[Json], dict[str, str]]:
        """(egress rules, rule counter -> policy rule name); fills `domain_sets` (base -> domains)."""
        rules: list[Json] = []
        names: dict[str, str] = {}
        for index, r in enumerate(policy.rules):
            compiled = self.policy_rule(index, r, categories, domain_sets)
            if compiled is not None:
                rules.extend(compiled)
                names[rule_counter(index)] = r.name
        return rules, names

    def policy_rule(self, index: int, r: common_pb2.Rule, categories: Mapping[str, list[str]],
                    domain_sets: dict[str, list[str]]) -> list[Json] | None:
        what = f"rule #{index}"
        if not valid_rule_name(r.name):
            self.reject(what, r.name, f"name must be {RULE_NAME_HELP}: rule skipped")
            return None
        what = f"rule {r.name}"
        if r.action not in (common_pb2.ACTION_ALLOW, common_pb2.ACTION_DENY, common_pb2.ACTION_ALERT):
            self.reject(what, r.name, f"no action ({r.action}): rule skipped")
            return None
        if r.protocol not in ("", "tcp", "udp", "icmp"):
            self.reject(what, r.name, f"protocol {r.protocol!r} is not tcp, udp or icmp: rule skipped")
            return None
        ports: list[Any] = []
        for pr in r.ports:
            last = pr.last or pr.first
            if not 1 <= pr.first <= last <= 65535:
                self.reject(what, r.name, f"invalid port range {pr.first}-{pr.last}: rule skipped")
                return None
            ports.append(pr.first if pr.first == last else {"range": [pr.first, last]})
        if ports and r.protocol == "icmp":
            self.reject(what, r.name, "ports with icmp: rule skipped")
            return None
        clauses = self.destinations(what, r, categories, domain_sets)
        if clauses is None:
            return None

        counter = rule_counter(index)
        out = []
        for version, dest in clauses:
            expr: list[Json] = []
            if dest is not None:
                expr.append(dest)
            if r.protocol in ("tcp", "udp"):
                expr.append(match(meta("l4proto"), r.protocol))
            elif r.protocol == "icmp":
                icmp: Any = {4: "icmp", 6: "ipv6-icmp", None: {"set": ["icmp", "ipv6-icmp"]}}[version]
                expr.append(match(meta("l4proto"), icmp))
            elif ports:
                expr.append(match(meta("l4proto"), {"set": ["tcp", "udp"]}))
            if ports:
                expr.append(match(payload("th", "dport"), ports[0] if len(ports) == 1 else {"set": ports}))
            expr += count(counter)
            expr += self.verdict(r.action)
            out.append(rule(CHAIN_EGRESS, expr, comment=f"{counter} {r.name}"))
        return out

    def destinations(self, what: str, r: common_pb2.Rule, categories: Mapping[str, list[str]],
                     domain_sets: dict[str, list[str]]) -> list[tuple[int | None, Json | None]] | None:
        """(IP version, daddr match) clauses, any of which the rule matches (CIDRs, domains,
        categories); one (None, None) for anywhere; None when the rule is skipped."""
        clauses: list[tuple[int | None, Json | None]] = []
        nets: list[Network] = []
        for text in r.cidrs:
            try:
                nets.append(ipaddress.ip_network(text, strict=True))
            except (ValueError, TypeError):
                self.reject(what, text, "not a canonical CIDR: value skipped")
        if r.cidrs and not nets:
            self.reject(what, r.name, "no valid CIDR left: rule skipped")
            return None
        for version in (4, 6):
            collapsed = list(ipaddress.collapse_addresses(n for n in nets if n.version == version))
            if collapsed:
                right: Any = {"set": [net_elem(n) for n in collapsed]}
                clauses.append((version, match(daddr(version), right)))
        domains = sorted({d for d in r.domains if valid_domain(d)})
        for d in r.domains:
            if not valid_domain(d):
                self.reject(what, d, "not a canonical domain name: value skipped")
        if r.domains and not domains:
            self.reject(what, r.name, "no valid domain left: rule skipped")
            return None
        if domains:
            base = domain_base(domains)
            domain_sets[base] = domains
            for version in (4, 6):
                clauses.append((version, match(daddr(version), in_set(family_set(base, version)))))
        cats = [c for c in r.categories if valid_category(c) and c in categories]
        for c in r.categories:
            if not valid_category(c):
                self.reject(what, c, "category name must match [a-z][a-z0-9_]{0,31}: value skipped")
        if r.categories and not cats:
            self.reject(what, r.name, "no valid category left: rule skipped")
            return None
        for c in sorted(set(cats)):
            for version in (4, 6):
                clauses.append((version, match(daddr(version), in_set(category_set(c, version)))))
        if not clauses:
            clauses.append((None, None))
        return clauses
