"""Validation entry points that turn pydantic's error list into one InvalidInput line.

Operators see the first problem (by YAML line when known) with its path, e.g.
``line 8: rules[1].ports[1]: port 70000 is out of range 1-65535``, and a count of the rest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name
from controller.domain.policy.model import LocError, Policy, Rule, UploadThreshold

# (pydantic loc, error points at the key rather than the value, pydantic error type) -> YAML line
LineOf = Callable[[tuple[Any, ...], bool, str], int | None]

_KNOWN_KEYS = sorted(set(Policy.model_fields) | set(Rule.model_fields) | set(UploadThreshold.model_fields))
_TYPE_EXPECTED = {
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "string_type": "a string",
    "int_type": "an integer",
}
_SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


MAX_LISTED = 10  # in the one-line message
MAX_KEPT = 100  # in InvalidInput.problems (they travel in gRPC trailing metadata: bounded)


def one_line(text: str) -> str:
    return " ".join(text.split())


def _render_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SAFE_KEY_RE.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{show(part)}]"
    return out


def _describe(error: Any) -> tuple[tuple[Any, ...], str, bool]:
    """(location, message, points_at_key) for one pydantic error."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if isinstance(exc, LocError):
            return loc + exc.loc, str(exc), False
        message = str(exc) if exc is not None else error["msg"]
        return loc, message, False
    if kind == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key {show(key)}{hint}", True
    if kind == "missing":
        return loc, f"missing required key {show(loc[-1])}", False
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        if isinstance(value, str):
            return loc, f"{show(value)} is not one of {expected}", False
        hint = " (unquoted yes/no/on/off/true/false are booleans in YAML)" if isinstance(value, bool) else ""
        return loc, f"expected one of {expected}, got {type_name(value)}{hint}", False
    if kind in _TYPE_EXPECTED:
        return loc, f"expected {_TYPE_EXPECTED[kind]}, got {type_name(value)}", False
    return loc, str(error["msg"]), False


def _report(exc: ValidationError, line_of: LineOf) -> InvalidInput:
    problems = []
    for error in exc.errors():
        loc, message, at_key = _describe(error)
        path = _render_path(loc[:-1] if error["type"] in ("extra_forbidden", "missing") else loc)
        line = line_of(loc, at_key, error["type"])
        problems.append((line or 0, path, message))
    problems.sort(key=lambda p: p[0])
    texts = tuple(one_line((f"line {line}: " if line else "") + (f"{path}: {message}" if path else message))
                  for line, path, message in problems)
    if len(texts) == 1:
        return InvalidInput(texts[0])
    shown = "; ".join(texts[:MAX_LISTED])
    more = f"; and {len(texts) - MAX_LISTED} more" if len(texts) > MAX_LISTED else ""
    kept = texts[:MAX_KEPT] + ((f"and {len(texts) - MAX_KEPT} more",) if len(texts) > MAX_KEPT else ())
    return InvalidInput(f"{len(texts)} problems: {shown}{more}", problems=kept)


def validated(data: Any, line_of: LineOf) -> Policy:
    """The Policy for plain data, or one InvalidInput whose line comes from ``line_of``."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _report(exc, line_of) from None


def validate_policy(data: Any) -> Policy:
    """Validate already-parsed data (e.g. JSON from an API); errors name the path but no line."""
    return validated(data, lambda *_: None)
