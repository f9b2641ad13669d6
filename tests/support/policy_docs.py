"""Policy YAML used by the policy tests: the example document and the one-line error helper."""

from __future__ import annotations

import textwrap

import pytest

from controller.domain.errors import InvalidInput
from controller.domain.policy.yaml_reader import parse_policy_yaml

EXAMPLE = textwrap.dedent(
    """\
    default_action: allow        # or deny
    rules:                       # ordered, first match wins
      - name: block-ai
        action: deny
        categories: [ai_tools]
      - name: web-out
        action: allow
        cidrs: [203.0.113.0/24, 2001:db8::/32]
        protocol: tcp
        ports: [443, "8000-8100"]
        domains: [example.com]
    categories:
      ai_tools: [newai.example]
    upload_thresholds:
      - category: cloud_storage
        max_per_day: 500MB
    """
)


def doc(text: str) -> str:
    return textwrap.dedent(text)


def error_of(text: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_policy_yaml(text)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message
