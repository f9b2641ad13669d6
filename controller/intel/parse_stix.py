"""STIX 2.1 bundles: network indicators out of indicator patterns, read with the real pattern parser.

A pattern is enforceable on a router only when it means "this address, network, domain or URL is
bad": comparisons with =, IN or ISSUBSET on ``ipv4-addr``/``ipv6-addr``/``domain-name``/``url``
``:value``, joined by OR. Anything that narrows the match (AND, FOLLOWEDBY, NOT, qualifiers) or
matches something else (hashes, certificates) would be over-blocking or meaningless as a block, so
the whole indicator is skipped with the reason rather than partly imported.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from controller.domain.errors import ControllerError
from controller.intel.entries import TLP_LEVELS, FeedEntry, FeedFormatError, FeedItem, Skipped, load_json

# TLP 1.0 marking definitions of the STIX 2.1 specification (section 7.2.1.4), TLP:WHITE as clear.
# TLP 2.0 ones of the OASIS extension (cti-stix-common-objects, extension-definition--60a3c5c5-...).
TLP_MARKING_IDS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
NETWORK_PATHS = {"ipv4-addr": "value", "ipv6-addr": "value", "domain-name": "value", "url": "value"}
MAX_PATTERN_LEN = 256 * 1024  # the ANTLR parser is slow; an IN list of thousands of values still fits

_RFC3339_RE = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ms(text: str) -> int:
    """``2024-01-02T03:04:05.678901234Z`` -> ms since the epoch (sub-millisecond digits dropped)."""
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 timestamp")
    day, clock, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    moment = datetime.fromisoformat(f"{day}T{clock}.{micros}{zone}")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _tlp_level(text: Any) -> str | None:
    """``green``, ``TLP:AMBER+STRICT``, ``white`` (TLP 1.0 for clear) -> a TLP_LEVELS value."""
    if not isinstance(text, str):
        return None
    level = text.strip().lower().removeprefix("tlp:")
    level = "clear" if level == "white" else level
    return level if level in TLP_LEVELS else None


def _marking_level(obj: dict[str, Any]) -> str | None:
    """The TLP level a marking-definition object in the bundle declares, if it is a TLP marking."""
    definition = obj.get("definition")
    kind = obj.get("definition_type")
    if isinstance(kind, str) and kind.lower() == "tlp" and isinstance(definition, dict):
        # the spec's {"tlp": "green"}; OpenCTI writes {"TLP": "TLP:GREEN"}
        level = _tlp_level(definition.get("tlp", definition.get("TLP")))
        if level:
            return level
    extensions = obj.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get(TLP2_EXTENSION), dict):
        level = _tlp_level(extensions[TLP2_EXTENSION].get("tlp_2_0"))
        if level:
            return level
    name = obj.get("name")
    if isinstance(name, str) and name.strip().upper().startswith("TLP:"):
        return _tlp_level(name)
    return None


def _strict_tlp(refs: Any, markings: dict[str, str]) -> str | None:
    """The most restrictive TLP among ``object_marking_refs``; other markings are ignored."""
    if not isinstance(refs, list):
        return None
    levels = [markings.get(ref) or TLP_MARKING_IDS.get(ref) for ref in refs if isinstance(ref, str)]
    found = [level for level in levels if level]
    return max(found, key=TLP_LEVELS.index) if found else None


# ---------------------------------------------------------------------------------------------
# Patterns


def _unquote(literal: str) -> str:
    """A STIX string literal's text: quotes removed, ``\\'`` and ``\\\\`` (the only escapes) undone."""
    inner, out, i = literal[1:-1], [], 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


class PatternSummary:
    """What a pattern asks for: the supported (object type, value) pairs, or why it cannot be used."""

    def __init__(self) -> None:
        self.values: list[tuple[str, str]] = []
        self.unsupported: list[str] = []
        self.invalid: list[str] = []

    def note(self, bucket: list[str], reason: str) -> None:
        if reason not in bucket:
            bucket.append(reason)


@cache
def _pattern_tools() -> tuple[Callable[[str], PatternSummary], type[Exception], bool]:
    """Load stix2-patterns once: (summarise, its ParseException, whether ANTLR prints warnings).

    The generated parser works only with the ANTLR runtime it was generated with
    (cti-pattern-validator #67, #84): a different minor version fails on import ("Could not
    deserialize ATN"), a different patch version prints a warning on every parse. The first is
    reported as a deployment error here, the second is silenced.
    """
    try:
        from antlr4.tree.Tree import TerminalNode
        from stix2patterns.exceptions import ParseException
        from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as P
        from stix2patterns.v21.grammars.STIXPatternVisitor import STIXPatternVisitor
        from stix2patterns.v21.pattern import Pattern
    except Exception as exc:  # the ATN mismatch raises a bare Exception at import
        raise ControllerError(
            f"STIX patterns cannot be parsed: stix2-patterns failed to load ({exc}); install the "
            "antlr4-python3-runtime version its parser was generated with"
        ) from exc

    def ops(ctx: Any) -> str:
        """The operator and qualifier words of a node (``NOT IN``, ``WITHIN 5 SECONDS``), no strings."""
        words = (c for c in ctx.getChildren() if isinstance(c, TerminalNode))
        return " ".join(w.getText() for w in words if w.getSymbol().type != P.StringLiteral)

    class Summariser(STIXPatternVisitor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.out = PatternSummary()

        def unsupported(self, reason: str) -> None:
            self.out.note(self.out.unsupported, reason)

        def chain(self, ctx: Any, unsupported: str | None) -> None:
            """Visit ``a OP b OP c`` (a left-deep tree) along a loop, not one recursion per OP.

            The visitor's own recursion would hit Python's limit at about 300 ORs in one pattern.
            """
            kind, node, rights = type(ctx), ctx, []
            while type(node) is kind and node.getChildCount() == 3:
                if unsupported:
                    self.unsupported(unsupported)
                rights.append(node.getChild(2))
                node = node.getChild(0)
            self.visit(node.getChild(0) if type(node) is kind else node)
            for right in reversed(rights):
                self.visit(right)

        def visitObservationExpressions(self, ctx: Any) -> Any:
            self.chain(ctx, "FOLLOWEDBY")

        def visitObservationExpressionOr(self, ctx: Any) -> Any:
            self.chain(ctx, None)

        def visitObservationExpressionAnd(self, ctx: Any) -> Any:
            self.chain(ctx, "AND between observations")

        def visitComparisonExpression(self, ctx: Any) -> Any:
            self.chain(ctx, None)

        def visitComparisonExpressionAnd(self, ctx: Any) -> Any:
            self.chain(ctx, "AND between comparisons")

        def visitWithinQualifier(self, ctx: Any) -> Any:
            self.unsupported(f"qualifier {ops(ctx)}")

        def visitRepeatedQualifier(self, ctx: Any) -> Any:
            self.unsupported(f"qualifier {ops(ctx)}")

        def visitStartStopQualifier(self, ctx: Any) -> Any:
            self.unsupported("qualifier START ... STOP")

        def path(self, ctx: Any) -> str | None:
            """The object type when the path is ``<network type>:value``, else None (noted)."""
            path = ctx.objectPath()
            kind = path.objectType().getText()
            first = path.firstPathComponent().getText()
            if path.objectPathComponent() is None and NETWORK_PATHS.get(kind) == first:
                return str(kind)
            self.unsupported(f"{path.getText()} is not a network property")
            return None

        def comparison(self, ctx: Any, allowed: str) -> str | None:
            kind = self.path(ctx)
            op = ops(ctx)
            if op != allowed:
                self.unsupported(f"operator {op}")
                return None
            return kind

        def add(self, kind: str, literal: Any, op: str) -> None:
            orderable = literal.orderableLiteral()
            token = orderable.StringLiteral() if orderable is not None else None
            if token is None:
                self.out.note(self.out.invalid, f"{kind}:value {op} {literal.getText()}: not a string")
            else:
                self.out.values.append((kind, _unquote(token.getText())))

        def visitPropTestEqual(self, ctx: Any) -> Any:
            kind = self.comparison(ctx, "=")
            if kind is not None:
                self.add(kind, ctx.primitiveLiteral(), "=")

        def visitPropTestSet(self, ctx: Any) -> Any:
            kind = self.comparison(ctx, "IN")
            if kind is not None:
                for literal in ctx.setLiteral().primitiveLiteral():
                    self.add(kind, literal, "IN")

        def visitPropTestIsSubset(self, ctx: Any) -> Any:
            kind = self.comparison(ctx, "ISSUBSET")
            if kind in ("domain-name", "url"):
                self.unsupported(f"ISSUBSET on {kind}:value")
            elif kind is not None:
                self.out.values.append((kind, _unquote(ctx.StringLiteral().getText())))

        def other(self, ctx: Any) -> Any:
            self.path(ctx)
            self.unsupported(f"operator {ops(ctx)}")

        visitPropTestOrder = visitPropTestLike = visitPropTestRegex = other
        visitPropTestIsSuperset = visitPropTestExists = other

    def summarise(text: str) -> PatternSummary:
        visitor = Summariser()
        Pattern(text).visit(visitor)
        return visitor.out

    noise = io.StringIO()
    with contextlib.redirect_stdout(noise):
        summarise("[ipv4-addr:value = '192.0.2.1']")
    return summarise, ParseException, bool(noise.getvalue())


def summarise_pattern(text: str) -> PatternSummary:
    """Parse a STIX 2.1 pattern; raises the library's ParseException when it does not parse."""
    summarise, _, noisy = _pattern_tools()
    if not noisy:
        return summarise(text)
    with contextlib.redirect_stdout(io.StringIO()):  # "ANTLR runtime and generated code versions disagree"
        return summarise(text)


# ---------------------------------------------------------------------------------------------
# Bundles


def _objects(data: str | bytes | dict[str, Any] | list[Any]) -> list[Any]:
    data = load_json(data, "STIX")
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise FeedFormatError(f"STIX feed must be a bundle object, got JSON {type(data).__name__}")
    kind = data.get("type")
    if kind == "bundle":
        objects = data.get("objects", [])
        if not isinstance(objects, list):
            raise FeedFormatError("STIX bundle 'objects' must be a list")
        return objects
    if kind == "indicator":
        return [data]
    raise FeedFormatError(f"not a STIX bundle or indicator (type {str(kind)[:40]!r})")


def parse_stix(data: str | bytes | dict[str, Any] | list[Any]) -> Iterator[FeedItem]:
    """Feed items of a STIX 2.1 bundle (or a lone indicator, or a list of objects).

    ``where`` is the indicator's ``id``; each supported comparison of its pattern is one entry
    (an IN list one per member) carrying the indicator's validity, confidence, TLP and revoked flag.
    """
    objects = _objects(data)
    markings: dict[str, str] = {}
    for obj in objects:
        if isinstance(obj, dict) and obj.get("type") == "marking-definition":
            level = _marking_level(obj) if isinstance(obj.get("id"), str) else None
            if level:
                markings[obj["id"]] = level
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            yield Skipped(f"objects[{index}]", "not a JSON object", unsupported=False)
        elif obj.get("type") == "indicator":
            where = obj.get("id") if isinstance(obj.get("id"), str) else f"objects[{index}]"
            yield from _indicator(str(where), obj, markings)


def _indicator(where: str, obj: dict[str, Any], markings: dict[str, str]) -> Iterator[FeedItem]:
    pattern_type = obj.get("pattern_type", "stix")  # STIX 2.0 indicators have no pattern_type
    if pattern_type != "stix":
        yield Skipped(where, f"pattern_type {str(pattern_type)[:40]!r} is not supported (only stix)", True)
        return
    pattern = obj.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        yield Skipped(where, "indicator has no pattern", unsupported=False)
        return
    if len(pattern) > MAX_PATTERN_LEN:
        yield Skipped(where, f"pattern is {len(pattern)} characters, max {MAX_PATTERN_LEN}", False)
        return
    _, parse_error, _ = _pattern_tools()
    try:
        summary = summarise_pattern(pattern)
    except parse_error as exc:
        yield Skipped(where, f"pattern does not parse: {exc}", unsupported=False)
        return
    except RecursionError:
        yield Skipped(where, "pattern does not parse: nested too deeply", unsupported=False)
        return
    if summary.unsupported:
        yield Skipped(where, "unsupported pattern: " + "; ".join(summary.unsupported), unsupported=True)
        return
    if summary.invalid:
        yield Skipped(where, "invalid pattern: " + "; ".join(summary.invalid), unsupported=False)
        return
    try:
        valid_from = _timestamp(obj, "valid_from")
        valid_until = _timestamp(obj, "valid_until")
        confidence = _confidence(obj.get("confidence"))
    except ValueError as exc:
        yield Skipped(where, str(exc), unsupported=False)
        return
    if not summary.values:  # e.g. [ipv4-addr:value IN ()]: names nothing to block
        yield Skipped(where, "the pattern names no value", unsupported=False)
        return
    tlp = _strict_tlp(obj.get("object_marking_refs"), markings)
    revoked = obj.get("revoked") is True
    for kind, value in summary.values:
        yield FeedEntry(
            where,
            value,
            is_url=kind == "url",
            confidence=confidence,
            valid_from_ms=valid_from,
            valid_until_ms=valid_until,
            tlp=tlp,
            revoked=revoked,
        )


def _timestamp(obj: dict[str, Any], key: str) -> int | None:
    text = obj.get(key)
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{key} must be an RFC 3339 timestamp string")
    try:
        return rfc3339_ms(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from exc


def _confidence(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"confidence {str(value)[:20]!r} is not an integer 0-100")
    return value
