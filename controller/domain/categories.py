"""Destination categories for egress policy: validation on the controller side.

The lists themselves ship with the agent (mssp/common/categories.py, the one source); a tenant
policy may extend them (``categories:`` in the policy YAML) and only those extensions travel in
the policy bundle.
"""

from __future__ import annotations

from typing import Any

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name
from mssp.common.categories import BUILTIN_CATEGORIES, CATEGORY_NAME_RE

__all__ = ["BUILTIN_CATEGORIES", "CATEGORY_NAME_RE", "category_names", "validate_category_name"]


def category_names() -> set[str]:
    """Names of the built-in categories (a fresh set: callers may add extension names)."""
    return set(BUILTIN_CATEGORIES)


def validate_category_name(name: Any) -> str:
    """A category name as used in policies and telemetry: ``[a-z][a-z0-9_]{0,31}``."""
    if not isinstance(name, str):
        raise InvalidInput(f"category name must be a string, got {type_name(name)}")
    if not CATEGORY_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid category name {show(name)}: use 1-32 lower-case letters, digits and '_', "
            "starting with a letter"
        )
    return name
