"""API keys of the tenant API: the key format, scopes and the values the service answers.

A key is ``mssp_tk_`` (tenant) or ``mssp_pk_`` (partner), 32 random base62 characters (190 bits)
and 6 base62 characters of the CRC32 of everything before them, GitHub-token style: a secret
scanner can find leaked keys by their prefix and verify them offline, and a typo or truncation is
refused without a database lookup. Only the SHA-256 of a key is ever stored (the key is random
enough that a slow hash adds nothing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.domain.errors import InvalidInput, PermissionDenied
from controller.domain.names import SLUG_RE, show
from mssp.common.text import has_unsafe

TENANT_PREFIX = "mssp_tk_"
PARTNER_PREFIX = "mssp_pk_"
KIND_TENANT = "tenant"
KIND_PARTNER = "partner"
PREFIX_OF_KIND = {KIND_TENANT: TENANT_PREFIX, KIND_PARTNER: PARTNER_PREFIX}
KIND_OF_PREFIX = {v: k for k, v in PREFIX_OF_KIND.items()}

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6  # 62**6 > 2**32: any CRC32 fits
KEY_LEN = len(TENANT_PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS
DISPLAY_PREFIX_LEN = 12  # what listings show: the kind prefix and 4 random characters
KEY_RE = re.compile(rf"mssp_[tp]k_[0-9A-Za-z]{{{RANDOM_CHARS + CHECKSUM_CHARS}}}")

GATEWAYS_READ, USAGE_READ, REPORTS_READ = "gateways:read", "usage:read", "reports:read"
TENANT_SCOPES: tuple[str, ...] = (
    GATEWAYS_READ, USAGE_READ, REPORTS_READ, "indicators:read", "indicators:write")
PARTNER_SCOPES: tuple[str, ...] = ("taxii:read",)
DEFAULT_SCOPES: tuple[str, ...] = (GATEWAYS_READ, USAGE_READ, REPORTS_READ)
SCOPES_OF_KIND = {KIND_TENANT: TENANT_SCOPES, KIND_PARTNER: PARTNER_SCOPES}

MAX_NAME_LEN = 63
MAX_SCOPES_TEXT = 300  # api_key.scopes column

STATE_ACTIVE = "active"
STATE_EXPIRED = "expired"
STATE_REVOKED = "revoked"


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as: a key, its kind, its tenant (None for a partner) and scopes."""

    key_id: str
    kind: str
    tenant_id: str | None
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this API key lacks scope {scope}")


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    kind: str
    tenant: str  # tenant name; "" for a partner key
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    prefix: str
    created_at_ms: int
    expires_at_ms: int  # 0: never
    revoked_at_ms: int  # 0: not revoked
    replaced_by: str
    last_used_at_ms: int
    state: str  # active | expired | revoked


def base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(BASE62[digit])
    if value:
        raise ValueError("value does not fit")
    return "".join(reversed(out))


def checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_CHARS)


def new_key(kind: str) -> str:
    body = PREFIX_OF_KIND[kind] + "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))
    return body + checksum(body)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def key_problem(presented: str) -> str | None:
    """Why `presented` cannot be a key (one line, never quoting it), or None if it may be one."""
    if len(presented) != KEY_LEN or not KEY_RE.fullmatch(presented) \
            or presented[: len(TENANT_PREFIX)] not in KIND_OF_PREFIX:
        return "malformed API key"
    if checksum(presented[:-CHECKSUM_CHARS]) != presented[-CHECKSUM_CHARS:]:
        return "API key checksum mismatch (mistyped or truncated key)"
    return None


def validate_scopes(kind: str, scopes: Iterable[str] | None) -> tuple[str, ...]:
    """Sorted, unique scopes allowed for `kind`; None or empty means the kind's default."""
    allowed = SCOPES_OF_KIND[kind]
    given = list(scopes or ())
    if any(not isinstance(s, str) for s in given):
        raise InvalidInput("scopes must be strings")
    wanted = [s.strip() for s in given if s.strip()]
    if not wanted:
        return DEFAULT_SCOPES if kind == KIND_TENANT else PARTNER_SCOPES
    for scope in wanted:
        if scope not in allowed:
            other = KIND_PARTNER if kind == KIND_TENANT else KIND_TENANT
            hint = f" (a {other}-key scope)" if scope in SCOPES_OF_KIND[other] else ""
            raise InvalidInput(
                f"unknown scope {show(scope)} for a {kind} key{hint}; allowed: {', '.join(allowed)}")
    return tuple(sorted(set(wanted)))


def join_scopes(scopes: Sequence[str]) -> str:
    return ",".join(scopes)


def split_scopes(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


def validate_label(name: str | None) -> str:
    """A tenant key's optional label: one printable line of at most 63 characters."""
    label = (name or "").strip()
    if len(label) > MAX_NAME_LEN:
        raise InvalidInput(f"key name {show(label)} is longer than {MAX_NAME_LEN} characters")
    if not label.isprintable() or has_unsafe(label):
        raise InvalidInput(f"key name {show(label)} contains control characters")
    return label


def validate_partner_name(name: str) -> str:
    """A partner (another MSSP, a CERT) is named like a tenant: a lowercase DNS-label slug."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("partner name is empty")
    if len(name) > MAX_NAME_LEN or not SLUG_RE.fullmatch(name):
        raise InvalidInput(f"invalid partner name {show(name)}: use lowercase letters, digits and '-' "
                           f"(at most {MAX_NAME_LEN}, e.g. cert-eu)")
    return name


def key_state(expires_at_ms: int, revoked_at_ms: int, now: int) -> str:
    if revoked_at_ms:
        return STATE_REVOKED
    if expires_at_ms and expires_at_ms <= now:
        return STATE_EXPIRED
    return STATE_ACTIVE
