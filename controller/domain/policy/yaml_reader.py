"""Policy YAML to a validated Policy, with errors that name the YAML line.

YAML is read through ``yaml.compose`` (node graph with line marks, no object construction)
and converted to plain data by our own small constructor: YAML 1.1 surprises such as
``1:20`` being the integer 80 or ``0x1bb`` being 443 cannot reach the model, aliases and
custom tags are refused, and duplicate keys are an error instead of last-one-wins.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name
from controller.domain.policy.model import Policy
from controller.domain.policy.validation import LineOf, one_line, validated

MAX_POLICY_BYTES = 1 << 20
MAX_YAML_DEPTH = 16

DEFAULT_POLICY_YAML = "default_action: allow\nrules: []\n"

_TAG = "tag:yaml.org,2002:"
_DEC_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_TRUE = {"true", "yes", "on"}
_MAX_MESSAGE = 300  # PyYAML messages can quote document text; keep the echo bounded


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
        return InvalidInput(one_line(f"{where}YAML syntax error: {problem}")[:_MAX_MESSAGE])
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        return InvalidInput(f"line {line}: character U+{char:04X} is not allowed in a YAML document")
    return InvalidInput(one_line(f"YAML error: {exc}")[:_MAX_MESSAGE])


def parse_policy_yaml(text: str) -> Policy:
    """Parse and validate a policy document; any problem is one InvalidInput naming the line."""
    data, line_of = read_policy_document(text)
    return validated(data, line_of)


def read_policy_document(text: str, what: str = "policy") -> tuple[dict[str, Any], LineOf]:
    """The document as plain data (a mapping, not yet validated) and the YAML line of a path in it."""
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
            raise InvalidInput(f"{what} document is empty; " + (
                "the minimal policy is 'default_action: allow'" if what == "policy"
                else "give at least one key such as 'rules' (or unset the override)"))
        if not isinstance(root, yaml.MappingNode):
            raise _YamlProblem(
                _line(root), f"{what} must be a mapping with keys such as 'default_action' and 'rules'"
            )
        data = _construct(root)
    except _YamlProblem as exc:
        raise InvalidInput(f"line {exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text) from None
    except RecursionError:
        raise InvalidInput(f"YAML nesting is deeper than {MAX_YAML_DEPTH} levels") from None

    def line_of(loc: tuple[Any, ...], at_key: bool, _kind: str) -> int:
        return _line(_locate(root, loc, at_key))

    return data, line_of
