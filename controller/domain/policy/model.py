"""The pydantic model of a tenant policy and the checks that span several fields.

Rules are evaluated in order on the router, first match wins; the cross-checks here
(unique rule names, known categories, one threshold per category) make that order and
the names in alerts unambiguous.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from controller.domain.categories import category_names
from controller.domain.policy.fields import (
    PortRange,
    dedupe,
    parse_byte_size,
    to_category,
    to_domain,
    to_lower,
    to_network,
    to_port_range,
    to_rule_name,
)

MAX_RULES = 1000


class LocError(ValueError):
    """A ValueError raised in a model validator that knows the sub-path it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _max_rules(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_RULES:
        raise ValueError(f"too many rules ({len(value)}, max {MAX_RULES})")
    return value


class Rule(BaseModel):
    """One ordered rule; the match is any of its destinations, narrowed by protocol and ports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str | None, BeforeValidator(to_rule_name)] = None
    action: Annotated[Literal["allow", "deny", "alert"], BeforeValidator(to_lower)]
    cidrs: list[Annotated[str, BeforeValidator(to_network)]] = Field(default_factory=list)
    protocol: Annotated[Literal["tcp", "udp", "icmp", "any"], BeforeValidator(to_lower)] = "any"
    ports: list[Annotated[PortRange, BeforeValidator(to_port_range)]] = Field(default_factory=list)
    domains: list[Annotated[str, BeforeValidator(to_domain)]] = Field(default_factory=list)
    categories: list[Annotated[str, BeforeValidator(to_category)]] = Field(default_factory=list)

    @field_validator("cidrs", "domains", "categories")
    @classmethod
    def _dedupe_lists(cls, value: list[str]) -> list[str]:
        return dedupe(value)

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise LocError(("ports",), f"ports need protocol tcp or udp (protocol is {self.protocol!r})")
        if not (self.cidrs or self.domains or self.categories or self.ports) and self.protocol == "any":
            raise LocError(
                (),
                "rule has nothing to match; give it cidrs, domains, categories, protocol or ports "
                "(use default_action for a catch-all)",
            )
        return self


class UploadThreshold(BaseModel):
    """Alert when a LAN host uploads more than this to a category in one day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Annotated[str, BeforeValidator(to_category)]
    max_per_day: Annotated[int, BeforeValidator(parse_byte_size)]


class Policy(BaseModel):
    """A tenant's egress policy. Rules are evaluated in order, first match wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_action: Annotated[Literal["allow", "deny"], BeforeValidator(to_lower)]
    rules: Annotated[list[Rule], BeforeValidator(_max_rules)] = Field(default_factory=list)
    categories: dict[
        Annotated[str, BeforeValidator(to_category)], list[Annotated[str, BeforeValidator(to_domain)]]
    ] = Field(default_factory=dict)
    upload_thresholds: list[UploadThreshold] = Field(default_factory=list)

    @field_validator("categories")
    @classmethod
    def _dedupe_categories(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: dedupe(domains) for name, domains in value.items()}

    def rule_name(self, index: int) -> str:
        """The rule's name, or ``rule-N`` (1-based) for unnamed rules; unique within the policy."""
        return self.rules[index].name or f"rule-{index + 1}"

    def known_categories(self) -> set[str]:
        return category_names() | set(self.categories)

    @model_validator(mode="after")
    def _cross_check(self) -> Policy:
        known = self.known_categories()
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            name = self.rule_name(i)
            if name in seen:
                where = ("rules", i, "name") if rule.name else ("rules", i)
                raise LocError(where, f"duplicate rule name {name!r} (also used by rules[{seen[name]}])")
            seen[name] = i
            for k, category in enumerate(rule.categories):
                if category not in known:
                    raise LocError(("rules", i, "categories", k), _unknown_category(category, known))
        thresholds: dict[str, int] = {}
        for i, threshold in enumerate(self.upload_thresholds):
            if threshold.category not in known:
                raise LocError(
                    ("upload_thresholds", i, "category"), _unknown_category(threshold.category, known)
                )
            if threshold.category in thresholds:
                raise LocError(
                    ("upload_thresholds", i, "category"),
                    f"duplicate threshold for category {threshold.category!r} "
                    f"(also upload_thresholds[{thresholds[threshold.category]}])",
                )
            thresholds[threshold.category] = i
        return self


def _unknown_category(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown category {name!r}; {hint}known: {', '.join(sorted(known))}"
