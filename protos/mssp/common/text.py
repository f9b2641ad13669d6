"""Text hygiene for strings that come from a gateway (or anyone else we do not control) and end up
on an operator's terminal.

A terminal obeys what it prints: ESC/CSI/OSC sequences can clear the screen, fake output, set the
window title or (on some terminals) write files; bidi overrides reorder what the eye reads. So every
such string is made inert before it is stored and again before it is printed: each unsafe character
becomes a visible escape (`\\x1b`, `\\u202e`), which keeps the evidence readable instead of silently
deleting it.

Unsafe = C0 controls (U+0000-U+001F), DEL (U+007F), C1 controls (U+0080-U+009F, which includes the
8-bit CSI U+009B and OSC U+009D), the bidi embeddings/overrides/isolates (U+202A-U+202E,
U+2066-U+2069), the bidi marks (U+200E, U+200F, U+061C) and the line/paragraph separators
(U+2028, U+2029). `clean_text` keeps newline and tab for multi-line output (YAML, logs).
"""

from __future__ import annotations

import re

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_UNSAFE_MULTILINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")  # keeps \t \n


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_unsafe(value: str) -> bool:
    """True when `value` holds a character a terminal would act on (see the module docstring)."""
    return _UNSAFE.search(value) is not None


def clean_line(value: str, max_len: int | None = None) -> str:
    """One line of inert text: every unsafe character (newline and tab included) escaped, then cut
    to `max_len` characters (escapes make a string longer; the cut never leaves a raw control)."""
    if not value.isprintable():  # fast path: printable text has no C0/C1/DEL/bidi control at all
        value = _UNSAFE.sub(_escape, value)
    return value if max_len is None else value[:max_len]


def clean_text(value: str) -> str:
    """Like clean_line, but newlines and tabs stay (multi-line output such as YAML; CRLF becomes LF,
    a lone CR, which can overwrite the line on screen, is escaped)."""
    if value.isprintable():
        return value
    return _UNSAFE_MULTILINE.sub(_escape, value.replace("\r\n", "\n"))
