"""The one definition of the names the controller accepts and the agent enforces.

Both sides import these checks, so a value the controller stores is never one the agent drops
(a rule ``Block-AI`` skipped whole, a domain ``c2_beacon.evil.example`` never sinkholed).

Rule names: 1-64 of ``A-Z a-z 0-9 _ . -``. The agent never turns a rule name into an nft
identifier (counters and chains are named ``rule_<index>``); the name only goes into the rule's
comment (nft accepts these characters there, JSON and native syntax alike) and into telemetry.

Domains, canonical form (the controller turns operator input into it: lower case, IDNA A-labels,
no trailing dot): two labels or more, 253 characters at most; each label 1-63 of ``a-z 0-9 - _``,
not starting or ending with ``-`` (``_`` appears in real names: ``_dmarc``, malware beacons); the
last label letters only, or an ``xn--`` IDN label. dnsmasq takes every such name in ``server=/.../``
and ``nftset=/.../`` lines; none holds a character dnsmasq or a configuration line treats as
special (``/``, ``#``, ``,``, space, quotes).
"""

from __future__ import annotations

import re

MAX_RULE_NAME_LEN = 64
RULE_NAME_RE = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_RULE_NAME_LEN}}}")
RULE_NAME_HELP = f"1-{MAX_RULE_NAME_LEN} of A-Z, a-z, 0-9, '_', '.', '-'"

MAX_DOMAIN_LEN = 253
MAX_LABEL_LEN = 63
LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
TLD_RE = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{0,58}[a-z0-9]")
_DOMAIN_RE = re.compile(rf"(?:{LABEL_RE.pattern}\.)+(?:{TLD_RE.pattern})")


def valid_rule_name(value: object) -> bool:
    return isinstance(value, str) and RULE_NAME_RE.fullmatch(value) is not None


def valid_domain(value: object) -> bool:
    """A canonical domain as defined above (one regex: this runs once per IOC on the agent)."""
    return (isinstance(value, str) and len(value) <= MAX_DOMAIN_LEN
            and _DOMAIN_RE.fullmatch(value) is not None)


def domain_problem(value: object) -> str | None:
    """Why `value` is not a canonical domain (for an error message), or None when it is one."""
    if not isinstance(value, str):
        return "not a string"
    if len(value) > MAX_DOMAIN_LEN:
        return f"longer than {MAX_DOMAIN_LEN} characters"
    labels = value.split(".")
    if len(labels) < 2:
        return "a single label; a fully qualified name has two or more"
    for label in labels:
        if not label:
            return "empty label (leading, trailing or doubled dot)"
        if len(label) > MAX_LABEL_LEN:
            return f"label longer than {MAX_LABEL_LEN} characters"
        if not LABEL_RE.fullmatch(label):
            return f"label {label!r} must be a-z, 0-9, '-', '_', not starting or ending with '-'"
    if not TLD_RE.fullmatch(labels[-1]):
        return "the top-level label must be letters or an xn-- IDN label"
    return None
