"""What changed between two policy documents: a unified diff of the text, and the change in meaning
(rules added, removed or changed by name, the default action) that history and dry runs show.

A document is a tenant policy or a gateway override (``gateway=True``: partial, and "" for "no
override"). Rules are compared by name (unnamed ones by their ``rule-N``/``override-N`` name).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.domain.policy.merge import EMPTY_TENANT, effective_policy, read_override
from controller.domain.policy.model import Policy, Rule
from controller.domain.policy.yaml_reader import parse_policy_yaml


@dataclass(frozen=True)
class Facts:
    """One document in the terms operators compare: its rules by name and its default action
    ("" when an override inherits the tenant's); `present` is False for a removed override."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default_action: str = ""
    present: bool = True


def facts(text: str, *, gateway: bool = False) -> Facts:
    if gateway:
        if not text:
            return Facts(present=False)
        override = read_override(text)
        policy = effective_policy(EMPTY_TENANT, override)
        default = policy.default_action if override.sets_default else ""
    else:
        policy = parse_policy_yaml(text)
        default = policy.default_action
    return Facts({policy.rule_name(i): rule.model_copy(update={"name": None})
                  for i, rule in enumerate(policy.rules)}, default)


@dataclass(frozen=True)
class Changes:
    rules_added: list[str]
    rules_removed: list[str]
    rules_changed: list[str]
    reordered: bool
    default_before: str
    default_after: str

    @property
    def empty(self) -> bool:
        return not (self.rules_added or self.rules_removed or self.rules_changed or self.reordered
                    or self.default_before != self.default_after)


def changes(before: Facts | None, after: Facts) -> Changes:
    old = before.rules if before is not None else {}
    added = [name for name in after.rules if name not in old]
    removed = [name for name in old if name not in after.rules]
    changed = [name for name, rule in after.rules.items() if name in old and old[name] != rule]
    common_old = [name for name in old if name in after.rules]
    common_new = [name for name in after.rules if name in old]
    return Changes(added, removed, changed, common_old != common_new,
                   before.default_action if before is not None else "", after.default_action)


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def summary(before: Facts | None, after: Facts, max_len: int = 300) -> str:
    """One line: what `after` is and what changed since `before` (None: the first version)."""
    if not after.present:
        return "override removed"
    default = after.default_action or "inherited"
    head = f"{len(after.rules)} rule{'' if len(after.rules) == 1 else 's'}, default {default}"
    if before is None or not before.present:
        return head + ("; first version" if before is None else "; override added")
    c = changes(before, after)
    parts = []
    if c.rules_added:
        parts.append(f"added {_names(c.rules_added)}")
    if c.rules_removed:
        parts.append(f"removed {_names(c.rules_removed)}")
    if c.rules_changed:
        parts.append(f"changed {_names(c.rules_changed)}")
    if c.reordered:
        parts.append("rules reordered")
    if c.default_before != c.default_after:
        parts.append(f"default {c.default_before or 'inherited'} -> {c.default_after or 'inherited'}")
    text = f"{head}; {'; '.join(parts) if parts else 'no rule or default change'}"
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def unified_diff(before: str, after: str, from_name: str, to_name: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=from_name, tofile=to_name)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _rule_data(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name, "action": rule.action}
    if rule.protocol != "any":
        out["protocol"] = rule.protocol
    if rule.ports:
        out["ports"] = [p.first if p.first == p.last else f"{p.first}-{p.last}" for p in rule.ports]
    for key in ("cidrs", "domains", "categories"):
        if getattr(rule, key):
            out[key] = list(getattr(rule, key))
    return out


def policy_yaml(policy: Policy) -> str:
    """A validated policy as a policy document (every rule named), e.g. a gateway's effective one."""
    data: dict[str, Any] = {"default_action": policy.default_action,
                            "rules": [_rule_data(r.model_copy(update={"name": policy.rule_name(i)}))
                                      for i, r in enumerate(policy.rules)]}
    if policy.categories:
        data["categories"] = {name: list(domains) for name, domains in policy.categories.items()}
    if policy.upload_thresholds:
        data["upload_thresholds"] = [{"category": t.category, "max_per_day": t.max_per_day}
                                     for t in policy.upload_thresholds]
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
