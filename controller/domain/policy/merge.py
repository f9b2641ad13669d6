"""Per-gateway overrides: a partial policy document layered on the tenant's policy.

The merge rule (README, "Per-gateway overrides"), chosen so an operator can predict the result
from the two documents alone:

- An override is a mapping with any of the policy's keys and none required; unknown keys are errors.
- ``default_action``: the override's when it has one, else the tenant's.
- ``rules``: the override's rules first, then the tenant's. Rules are evaluated in order and the
  first match wins, so a gateway's rules take precedence over the tenant's. A rule name may not be
  used in both documents; unnamed rules keep the names of their own document (the tenant's
  ``rule-N``, the override's ``override-N``), so counters and alerts name the same rule everywhere.
- ``categories`` (domain lists by category name): per name. The override's list for a name
  replaces the tenant's list for that name; the tenant's other categories stay.
- ``upload_thresholds``: per category. The override's threshold for a category replaces the
  tenant's for it; the tenant's others stay (after the override's).
- The tenant's false-positive exemptions are not a document key: they apply to every gateway.

The merged document is validated like any policy; a problem in the override's part names the
override file's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.domain.errors import InvalidInput
from controller.domain.policy.model import Policy
from controller.domain.policy.validation import LineOf, validated
from controller.domain.policy.yaml_reader import read_policy_document

OVERRIDE_RULE_PREFIX = "override-"
# What an override is measured against when shown on its own (its history, its diff).
EMPTY_TENANT = Policy(default_action="allow")


@dataclass(frozen=True)
class Override:
    data: dict[str, Any]
    line_of: LineOf

    @property
    def sets_default(self) -> bool:
        return "default_action" in self.data


def read_override(text: str) -> Override:
    """Parse an override document (YAML, strict like a policy); its values are checked by the merge."""
    data, line_of = read_policy_document(text, "override")
    if not data:
        raise InvalidInput("override document is empty; give at least one key such as 'rules' "
                           "(or unset the override)")
    return Override(data, line_of)


def tenant_data(policy: Policy) -> dict[str, Any]:
    """The tenant's policy as plain data with every rule named (its unnamed ones as `rule-N`)."""
    data = policy.model_dump()
    for index, rule in enumerate(data["rules"]):
        rule["name"] = policy.rule_name(index)
    return data


def _named(rule: Any, index: int) -> Any:
    if isinstance(rule, dict) and rule.get("name") is None:
        return {**rule, "name": f"{OVERRIDE_RULE_PREFIX}{index + 1}"}
    return rule


def merged_document(tenant: Policy, override: Override) -> tuple[dict[str, Any], LineOf]:
    """The merged plain data and the line (in the override) of a path in it, by the rule above."""
    base = tenant_data(tenant)
    own = override.data
    out = dict(base)
    for key, value in own.items():
        if key == "rules" and isinstance(value, list):
            rules = [_named(rule, j) for j, rule in enumerate(value)]
            _check_names(rules, base["rules"], override)
            out["rules"] = rules + base["rules"]
        elif key == "categories" and isinstance(value, dict):
            out["categories"] = {**{k: v for k, v in base["categories"].items() if k not in value}, **value}
        elif key == "upload_thresholds" and isinstance(value, list):
            replaced = {t.get("category") for t in value if isinstance(t, dict)}
            out["upload_thresholds"] = value + [t for t in base["upload_thresholds"]
                                                if t["category"] not in replaced]
        else:  # default_action, and keys or values the model refuses (the error names the override)
            out[key] = value

    def line_of(loc: tuple[Any, ...], at_key: bool, kind: str) -> int | None:
        if not loc or loc[0] not in own:
            return None
        head, mine = loc[0], own[loc[0]]
        if head in ("rules", "upload_thresholds") and isinstance(mine, list) and len(loc) > 1:
            if not (isinstance(loc[1], int) and loc[1] < len(mine)):
                return None  # one of the tenant's, after the override's
        if head == "categories" and isinstance(mine, dict) and len(loc) > 1 and loc[1] not in mine:
            return None
        return override.line_of(loc, at_key, kind)

    return out, line_of


def _check_names(rules: list[Any], tenant_rules: list[dict[str, Any]], override: Override) -> None:
    taken = {rule["name"] for rule in tenant_rules}
    for index, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str) and name in taken:
            line = override.line_of(("rules", index, "name"), False, "value_error")
            where = f"line {line}: " if line else ""
            raise InvalidInput(f"{where}rules[{index}].name: rule name {name!r} is also a rule of the "
                               "tenant policy; rule names must be distinct (rename the override's rule)")


def effective_policy(tenant: Policy, override: Override) -> Policy:
    """The policy a gateway enforces: `override` layered on `tenant`, validated as a whole."""
    data, line_of = merged_document(tenant, override)
    return validated(data, line_of)


def shadows(tenant: Policy, override: Override) -> list[str]:
    """What of the tenant's policy `override` replaces or precedes, for a dry run to show."""
    own = override.data
    out = ["default_action"] if override.sets_default else []
    rules = own.get("rules")
    if isinstance(rules, list) and rules:
        out.append(f"rules ({len(rules)} evaluated first)")
    categories = own.get("categories")
    if isinstance(categories, dict):
        out += [f"categories: {name}" for name in categories if name in tenant.categories]
    thresholds = own.get("upload_thresholds")
    if isinstance(thresholds, list):
        theirs = {t.category for t in tenant.upload_thresholds}
        out += [f"upload_thresholds: {t['category']}" for t in thresholds
                if isinstance(t, dict) and t.get("category") in theirs]
    return out
