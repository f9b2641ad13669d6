"""`-o json` gives each field one type (issue 9's CLI grammar): numbers as numbers, enums as the
lower-case words the tables show."""

from __future__ import annotations

from controller.cli import output
from controller.cli.output import to_dict
from mssp.v1 import common_pb2, intel_pb2, operator_pb2


def test_64_bit_integers_are_numbers_and_enums_are_words() -> None:
    info = operator_pb2.IocInfo(ioc=common_pb2.Ioc(type=common_pb2.IOC_TYPE_CIDR6, value="2001:db8::/32",
                                                   expires_at_ms=1_800_000_000_000), seq=7)
    data = to_dict(info)
    assert data["ioc"]["type"] == "cidr6" and data["ioc"]["expires_at_ms"] == 1_800_000_000_000
    assert data["seq"] == 7 and data["created_at_ms"] == 0
    result = to_dict(intel_pb2.ImportResult(seqs=[3, 4], new=2))
    assert result["seqs"] == [3, 4] and result["new"] == 2
    rule = to_dict(common_pb2.Rule(name="no-ai", action=common_pb2.ACTION_DENY))
    assert rule["action"] == "deny"
    unset = to_dict(common_pb2.Ioc())
    assert unset["type"] == "unspecified" and unset["expires_at_ms"] == 0


def test_json_has_every_field_with_proto_names() -> None:
    tenant = operator_pb2.Tenant(name="acme", plan="standard")
    data = output.to_dict(tenant)
    assert data["name"] == "acme"
    assert data["gateway_count"] == 0 and data["policy_version"] == 0


def test_versions_and_relative_times() -> None:
    assert output.versions(common_pb2.Versions(tenant_seq=4, global_seq=9)) == "t4/g9"
    assert output.versions(common_pb2.Versions(tenant_seq=4, global_seq=9, alliance_seq=2)) == "t4/g9/a2"
    now = 1_700_000_000_000
    assert output.relative(0) == "never"
    assert output.relative(now - 90_000, now_ms=now) == "1m ago"
    assert output.relative(now + 3 * 3600_000, now_ms=now) == "in 3h"
