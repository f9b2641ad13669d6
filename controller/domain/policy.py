"""Tenant egress policy: YAML text in, validated model, signed-bundle payload out.

The YAML is written by operators and compiled on routers into nftables JSON and dnsmasq
config, so every value is parsed into canonical form here and a bad document is rejected
with one line that names the YAML line and the path of the offending value.

YAML is read through ``yaml.compose`` (node graph with line marks, no object construction)
and converted to plain data by our own small constructor: YAML 1.1 surprises such as
``1:20`` being the integer 80 or ``0x1bb`` being 443 cannot reach the model, aliases and
custom tags are refused, and duplicate keys are an error instead of last-one-wins.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.domain.categories import category_names, validate_category_name
from controller.domain.errors import InvalidInput
from controller.domain.ioc import canonical_network, parse_domain
from controller.domain.names import show, type_name
from mssp.common.names import RULE_NAME_HELP, RULE_NAME_RE
from mssp.common.parts import MAX_POLICY_BUNDLE_BYTES
from mssp.v1 import common_pb2

MAX_RULES = 1000
MAX_POLICY_BYTES = 1 << 20
MAX_YAML_DEPTH = 16
MAX_BYTES_PER_DAY = 10**15  # 1 PB: anything above is a typo, not a threshold

DEFAULT_POLICY_YAML = "default_action: allow\nrules: []\n"

_ACTIONS = {
    "allow": common_pb2.ACTION_ALLOW,
    "deny": common_pb2.ACTION_DENY,
    "alert": common_pb2.ACTION_ALERT,
}
_BYTE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"(\d{1,20}(?:\.\d{1,20})?)\s?([A-Za-z]{0,3})")
_PORT_RE = re.compile(r"(\d{1,6})(?:-(\d{1,6}))?")


class _LocError(ValueError):
    """A ValueError raised in a model validator that knows the sub-path it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


_T = TypeVar("_T")


def _domain_errors(fn: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Pydantic only collects ValueErrors; domain validators raise InvalidInput."""

    @functools.wraps(fn)
    def wrapper(value: Any) -> _T:
        try:
            return fn(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    return wrapper


def _expect_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {type_name(value)}")
    return value


@_domain_errors
def _network(value: Any) -> str:
    return canonical_network(_expect_str(value, "a network like 203.0.113.0/24"))


@_domain_errors
def _domain(value: Any) -> str:
    return parse_domain(_expect_str(value, "a domain"))


@_domain_errors
def _category(value: Any) -> str:
    return validate_category_name(value)


def _rule_name(value: Any) -> Any:
    if value is None:
        return None
    name = _expect_str(value, "a rule name")
    if not RULE_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid rule name {show(name)}: use {RULE_NAME_HELP}")
    return name


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def _port(value: Any) -> Any:
    """``443``, ``"443"`` or ``"8000-8100"``; a mapping (from model_dump) is left to the model."""
    if isinstance(value, PortRange | dict):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a port number or a range like '8000-8100', got {type_name(value)}")
    if isinstance(value, int):
        return PortRange(first=_check_port(value), last=value)
    match = _PORT_RE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid port {show(value)}: use a number 1-65535 or a range like '8000-8100'")
    first = _check_port(int(match[1]))
    last = _check_port(int(match[2])) if match[2] else first
    if first > last:
        raise ValueError(f"port range {first}-{last} is reversed (first port must not exceed the last)")
    return PortRange(first=first, last=last)


def parse_byte_size(value: Any) -> int:
    """``500MB`` (decimal units), ``2GiB`` (binary units) or a plain byte count; must be positive."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size like '500MB', got {type_name(value)}")
    if isinstance(value, int):
        amount = Decimal(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match[2].upper() if match else ""
        if not match or unit not in _BYTE_UNITS:
            raise ValueError(
                f"invalid size {show(value)}: use a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            )
        try:
            amount = Decimal(match[1]) * _BYTE_UNITS[unit]
        except InvalidOperation:
            raise ValueError(f"invalid size {show(value)}") from None
    size = int(amount)
    if size <= 0:
        raise ValueError(f"size {show(value)} must be at least 1 byte")
    if size > MAX_BYTES_PER_DAY:
        raise ValueError(f"size {show(value)} is larger than the 1PB maximum")
    return size


def _max_rules(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_RULES:
        raise ValueError(f"too many rules ({len(value)}, max {MAX_RULES})")
    return value


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class PortRange(BaseModel):
    """Inclusive destination port range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int
    last: int

    @model_validator(mode="after")
    def _check(self) -> PortRange:
        _check_port(self.first)
        _check_port(self.last)
        if self.first > self.last:
            raise ValueError(f"port range {self.first}-{self.last} is reversed")
        return self


class Rule(BaseModel):
    """One ordered rule; the match is any of its destinations, narrowed by protocol and ports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str | None, BeforeValidator(_rule_name)] = None
    action: Annotated[Literal["allow", "deny", "alert"], BeforeValidator(_lower)]
    cidrs: list[Annotated[str, BeforeValidator(_network)]] = Field(default_factory=list)
    protocol: Annotated[Literal["tcp", "udp", "icmp", "any"], BeforeValidator(_lower)] = "any"
    ports: list[Annotated[PortRange, BeforeValidator(_port)]] = Field(default_factory=list)
    domains: list[Annotated[str, BeforeValidator(_domain)]] = Field(default_factory=list)
    categories: list[Annotated[str, BeforeValidator(_category)]] = Field(default_factory=list)

    @field_validator("cidrs", "domains", "categories")
    @classmethod
    def _dedupe_lists(cls, value: list[str]) -> list[str]:
        return _dedupe(value)

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise _LocError(("ports",), f"ports need protocol tcp or udp (protocol is {self.protocol!r})")
        if not (self.cidrs or self.domains or self.categories or self.ports) and self.protocol == "any":
            raise _LocError(
                (),
                "rule has nothing to match; give it cidrs, domains, categories, protocol or ports "
                "(use default_action for a catch-all)",
            )
        return self


class UploadThreshold(BaseModel):
    """Alert when a LAN host uploads more than this to a category in one day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Annotated[str, BeforeValidator(_category)]
    max_per_day: Annotated[int, BeforeValidator(parse_byte_size)]


class Policy(BaseModel):
    """A tenant's egress policy. Rules are evaluated in order, first match wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_action: Annotated[Literal["allow", "deny"], BeforeValidator(_lower)]
    rules: Annotated[list[Rule], BeforeValidator(_max_rules)] = Field(default_factory=list)
    categories: dict[
        Annotated[str, BeforeValidator(_category)], list[Annotated[str, BeforeValidator(_domain)]]
    ] = Field(default_factory=dict)
    upload_thresholds: list[UploadThreshold] = Field(default_factory=list)

    @field_validator("categories")
    @classmethod
    def _dedupe_categories(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: _dedupe(domains) for name, domains in value.items()}

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
                raise _LocError(where, f"duplicate rule name {name!r} (also used by rules[{seen[name]}])")
            seen[name] = i
            for k, category in enumerate(rule.categories):
                if category not in known:
                    raise _LocError(("rules", i, "categories", k), _unknown_category(category, known))
        thresholds: dict[str, int] = {}
        for i, threshold in enumerate(self.upload_thresholds):
            if threshold.category not in known:
                raise _LocError(
                    ("upload_thresholds", i, "category"), _unknown_category(threshold.category, known)
                )
            if threshold.category in thresholds:
                raise _LocError(
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


# ---------------------------------------------------------------------------------------------
# Error reporting

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
        if isinstance(exc, _LocError):
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _report(
    exc: ValidationError, line_of: Callable[[tuple[Any, ...], bool, str], int | None]
) -> InvalidInput:
    problems = []
    for error in exc.errors():
        loc, message, at_key = _describe(error)
        path = _render_path(loc[:-1] if error["type"] in ("extra_forbidden", "missing") else loc)
        line = line_of(loc, at_key, error["type"])
        problems.append((line or 0, path, message))
    problems.sort(key=lambda p: p[0])
    line, path, message = problems[0]
    text = f"{path}: {message}" if path else message
    if line:
        text = f"line {line}: {text}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return InvalidInput(_one_line(text))


def validate_policy(data: Any) -> Policy:
    """Validate already-parsed data (e.g. JSON from an API); errors name the path but no line."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _report(exc, lambda *_: None) from None


# ---------------------------------------------------------------------------------------------
# YAML

_TAG = "tag:yaml.org,2002:"
_DEC_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_TRUE = {"true", "yes", "on"}


class _YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _line(node_or_event: Any) -> int:
    return int(node_or_event.start_mark.line) + 1


def _check_events(text: str) -> None:
    """First pass over the event stream (iterative, no recursion): aliases and depth."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _YamlProblem(_line(event), "YAML aliases ('*name') are not allowed")
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise _YamlProblem(_line(event), "YAML anchors ('&name') are not allowed")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlProblem(_line(event), f"YAML nesting is deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _construct(node: yaml.Node) -> Any:
    """Plain data from a node: str, int (decimal only), bool, None, float, list, dict."""
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        value = str(node.value)
        if tag in (_TAG + "str", _TAG + "timestamp"):
            return value
        if tag == _TAG + "int":
            return int(value) if _DEC_INT_RE.fullmatch(value) else value
        if tag == _TAG + "bool":
            return value.lower() in _TRUE
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "float":
            try:
                return float(value.replace("_", ""))
            except ValueError:
                return value
    elif isinstance(node, yaml.SequenceNode) and tag == _TAG + "seq":
        return [_construct(item) for item in node.value]
    elif isinstance(node, yaml.MappingNode) and tag == _TAG + "map":
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _TAG + "merge":
                raise _YamlProblem(_line(key_node), "YAML merge keys ('<<') are not allowed")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlProblem(_line(key_node), "mapping keys must be plain strings")
            key = str(key_node.value)
            if key in out:
                raise _YamlProblem(
                    _line(key_node), f"duplicate key {show(key)} (first on line {first_line[key]})"
                )
            first_line[key] = _line(key_node)
            out[key] = _construct(value_node)
        return out
    raise _YamlProblem(_line(node), f"unsupported YAML tag {show(tag)}")


def _locate(root: yaml.Node, loc: tuple[Any, ...], at_key: bool) -> yaml.Node:
    """The deepest node on the error's path (keys resolve through the mapping's key nodes)."""
    node = root
    key_node: yaml.Node | None = None
    for part in loc:
        if part == "[key]" and key_node is not None:
            node = key_node
            continue
        if isinstance(node, yaml.MappingNode):
            pair = next((p for p in node.value if str(p[0].value) == str(part)), None)
            if pair is None:
                break
            key_node, node = pair
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            break
    if at_key and key_node is not None:
        return key_node
    return node


def _syntax_error(exc: yaml.YAMLError, text: str) -> InvalidInput:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, yaml.composer.ComposerError) and "another document" in problem:
            problem = "a policy must be a single YAML document (found '---' starting another)"
        where = f"line {mark.line + 1}: " if mark is not None else ""
        return InvalidInput(_one_line(f"{where}YAML syntax error: {problem}")[:300])
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        return InvalidInput(f"line {line}: character U+{char:04X} is not allowed in a YAML document")
    return InvalidInput(_one_line(f"YAML error: {exc}")[:300])


def parse_policy_yaml(text: str) -> Policy:
    """Parse and validate a policy document; any problem is one InvalidInput naming the line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("policy document is not valid UTF-8") from None
    if not isinstance(text, str):
        raise InvalidInput(f"policy document must be text, got {type_name(text)}")
    if len(text) > MAX_POLICY_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise InvalidInput(f"policy document is larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        _check_events(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _TAG + "null"):
            raise InvalidInput("policy document is empty; the minimal policy is 'default_action: allow'")
        if not isinstance(root, yaml.MappingNode):
            raise _YamlProblem(
                _line(root), "policy must be a mapping with keys such as 'default_action' and 'rules'"
            )
        data = _construct(root)
    except _YamlProblem as exc:
        raise InvalidInput(f"line {exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text) from None
    except RecursionError:
        raise InvalidInput(f"YAML nesting is deeper than {MAX_YAML_DEPTH} levels") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:

        def line_of(loc: tuple[Any, ...], at_key: bool, _kind: str) -> int:
            return _line(_locate(root, loc, at_key))

        raise _report(exc, line_of) from None


def policy_to_bundle(policy: Policy, version: int) -> common_pb2.PolicyBundle:
    """The wire form of a policy; ``categories`` carries only this policy's extensions."""
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**64:
        raise InvalidInput(f"policy version must be an integer 0..2^64-1, got {version!r}")
    if not isinstance(policy, Policy):
        raise InvalidInput(f"expected a Policy, got {type(policy).__name__}")
    # Re-validate: a model_construct()ed or otherwise hand-built Policy must not skip the checks.
    policy = validate_policy(policy.model_dump())
    bundle = common_pb2.PolicyBundle(version=version, default_action=_ACTIONS[policy.default_action])
    for index, rule in enumerate(policy.rules):
        bundle.rules.append(
            common_pb2.Rule(
                name=policy.rule_name(index),
                action=_ACTIONS[rule.action],
                cidrs=rule.cidrs,
                protocol="" if rule.protocol == "any" else rule.protocol,
                ports=[common_pb2.PortRange(first=p.first, last=p.last) for p in rule.ports],
                domains=rule.domains,
                categories=rule.categories,
            )
        )
    for threshold in policy.upload_thresholds:
        bundle.upload_thresholds.append(
            common_pb2.UploadThreshold(category=threshold.category, bytes_per_day=threshold.max_per_day)
        )
    for name in sorted(policy.categories):
        bundle.categories[name].domains.extend(policy.categories[name])
    check_bundle_size(bundle)
    return bundle


def check_bundle_size(bundle: common_pb2.PolicyBundle) -> None:
    """A policy travels whole in one push (and in part 0 of a tenant snapshot): its bundle must fit
    one broker message with room for the envelope. A YAML under MAX_POLICY_BYTES can compile larger."""
    size = bundle.ByteSize()
    if size > MAX_POLICY_BUNDLE_BYTES:
        raise InvalidInput(
            f"policy compiles to a {size:,}-byte bundle, over the {MAX_POLICY_BUNDLE_BYTES:,}-byte limit "
            "(a policy push must fit one 1 MiB broker message); use fewer or wider CIDRs, fewer domains, "
            "or put bulk indicators in IOCs (they travel in parts)"
        )
