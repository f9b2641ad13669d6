"""`-o json` gives each field one type (issue 9's CLI grammar): numbers as numbers, enums as the
lower-case words the tables show."""

from __future__ import annotations

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
