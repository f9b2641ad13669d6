"""Plain blocklists: one value per line (firehol ipsets/netsets, Spamhaus DROP, hosts-free IP lists).

The importer runs million-line lists through here, so the loop does only cheap string tests and
builds entries through a fast path (see :func:`_fast_template`). Values are not validated here:
``controller.domain.ioc.parse_ioc`` judges each one, so a line with stray text in it is passed on
whole and refused there with a reason, rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from controller.intel.entries import FeedEntry, FeedItem


def _fast_template() -> dict[str, object] | None:
    """The instance dict of a default FeedEntry, or None when entries must go through __init__.

    The frozen dataclass sets each of its eight fields through object.__setattr__ (about 1.2 us
    per entry on this hardware, more than all the other per-line work together); filling the
    instance dict directly gives an identical object three times faster. If FeedEntry ever loses
    its plain instance dict (slots) or gains a __post_init__, the probe below turns this off.
    """
    probe = FeedEntry("line 1", "192.0.2.1", True)
    if not hasattr(probe, "__dict__") or hasattr(FeedEntry, "__post_init__"):
        return None
    template = {f.name: f.default for f in fields(FeedEntry) if f.name not in ("where", "value")}
    made = object.__new__(FeedEntry)
    made.__dict__.update(template, where="line 1", value="192.0.2.1", is_url=True)
    return template if made == probe and vars(made) == vars(probe) else None


_TEMPLATE = _fast_template()


def new_entry(where: str, value: str, is_url: bool = False) -> FeedEntry:
    """FeedEntry(where, value, is_url) through the fast path when it is available."""
    if _TEMPLATE is None:
        return FeedEntry(where, value, is_url)
    entry = object.__new__(FeedEntry)
    state = entry.__dict__
    state.update(_TEMPLATE)
    state["where"] = where
    state["value"] = value
    state["is_url"] = is_url
    return entry


def strip_port(value: str) -> str:
    """``192.0.2.1:443`` -> ``192.0.2.1`` and ``[2001:db8::1]:443`` -> ``2001:db8::1`` (ThreatFox).

    Only an IPv4-looking host or a bracketed one loses its port: a bare IPv6 address has colons of
    its own, and ``host.example:443`` is left for parse_ioc to refuse with its own advice.
    """
    if value.startswith("["):
        close = value.find("]")
        if close > 1:
            rest = value[close + 1 :]
            if not rest or (rest[0] == ":" and rest[1:].isdigit() and rest.isascii()):
                return value[1:close]
        return value
    host, _, port = value.partition(":")
    if port.isdigit() and host.replace(".", "").isdigit() and value.isascii():
        return host
    return value


def _cut_url_comment(value: str) -> str:
    """In a URL ``#`` and ``;`` can be part of the value: only one after whitespace starts a comment."""
    for i, ch in enumerate(value):
        if (ch == "#" or ch == ";") and value[i - 1] in " \t":
            return value[:i].rstrip()
    return value


def parse_plain(text: str) -> Iterator[FeedItem]:
    """One FeedEntry per value line; ``where`` is ``line N`` (1-based physical line).

    Skipped lines (blank, ``#``/``;`` comments, firehol headers) yield nothing. A line holding a
    URL (``://``) gives ``is_url=True`` so the importer can say why it is not enforceable.
    """
    template = _TEMPLATE
    new = object.__new__
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        value = raw.strip()
        if not value or value[0] == "#" or value[0] == ";":
            continue
        if "#" in value or ";" in value:
            # an inline comment: "198.51.100.0/24 ; SBL123" (Spamhaus DROP), "192.0.2.1 # note"
            if "://" in value:
                value = _cut_url_comment(value)
            else:
                value = value.split("#", 1)[0].split(";", 1)[0].rstrip()
            if not value:
                continue
        is_url = False
        if ":" in value:
            if "://" in value:
                is_url = True
            elif value[0] == "[" or value.count(":") == 1:
                value = strip_port(value)
        if template is None:
            yield FeedEntry(f"line {number}", value, is_url)
            continue
        # new_entry() inlined: the call alone is a sixth of the per-line cost
        entry = new(FeedEntry)
        state = entry.__dict__
        state.update(template)
        state["where"] = f"line {number}"
        state["value"] = value
        state["is_url"] = is_url
        yield entry
