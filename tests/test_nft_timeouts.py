"""Element timeouts at the longest TTL the controller allows load through both renderers.

nft 1.0.6 refuses ``timeout 315360000s`` ("value too large": more than 8 digits before a unit) while
the controller accepts a 10-year IOC TTL; the native renderer (used above 10k elements) wrote exactly
that, so one long-lived IOC failed every later full apply. The root tests hand both documents to
``nft -c`` (the kernel checks the transaction and discards it) in a namespace of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from gateway_agent.nft.compile import compile_state
from gateway_agent.nft.config import NftConfig
from gateway_agent.nft.native import to_native
from gateway_agent.nft.timeouts import MAX_TIMEOUT_S, nft_duration, timeout_seconds
from gateway_agent.state import DesiredState
from mssp.common.limits import MAX_TTL_SECONDS
from mssp.v1 import common_pb2 as pb
from mssp.v1 import push_pb2

NOW = 1_700_000_000_000
TENANT = "tenant:t1"
NO_NFT = ("needs root and nft" if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip")
          else None)


def long_lived_state(count: int = 3) -> DesiredState:
    """IOCs at the controller's longest TTL, just under it, one second, and one far beyond it."""
    iocs = [
        pb.Ioc(type=pb.IOC_TYPE_IPV4, value="198.51.100.1", expires_at_ms=NOW + MAX_TTL_SECONDS * 1000),
        pb.Ioc(type=pb.IOC_TYPE_IPV4, value="198.51.100.2", expires_at_ms=NOW + MAX_TTL_SECONDS * 1000 - 1),
        pb.Ioc(type=pb.IOC_TYPE_IPV4, value="198.51.100.3", expires_at_ms=NOW + 1000),
        pb.Ioc(type=pb.IOC_TYPE_IPV4, value="198.51.100.4", expires_at_ms=253_402_300_799_000),  # 9999
        pb.Ioc(type=pb.IOC_TYPE_IPV6, value="2001:db8::1", expires_at_ms=NOW + MAX_TTL_SECONDS * 1000),
        pb.Ioc(type=pb.IOC_TYPE_CIDR4, value="203.0.113.0/24", expires_at_ms=NOW + MAX_TTL_SECONDS * 1000),
        *(pb.Ioc(type=pb.IOC_TYPE_IPV4, value=f"192.0.2.{i}", expires_at_ms=NOW + (i + 1) * 86_400_000)
          for i in range(count)),
    ]
    state = DesiredState(TENANT)
    state.apply(push_pb2.Push(channel="global", seq=1, snapshot=push_pb2.SnapshotPart(
        index=0, last=True, iocs=iocs)))
    return state


def test_the_agent_clamps_to_the_controllers_limit() -> None:
    assert MAX_TIMEOUT_S == MAX_TTL_SECONDS == 3650 * 86400
    assert timeout_seconds(NOW + MAX_TTL_SECONDS * 1000, NOW) == MAX_TTL_SECONDS
    assert timeout_seconds(NOW + 1, NOW) == 1  # rounded up: blocks until its expiry, never less
    assert timeout_seconds(253_402_300_799_000, NOW) == MAX_TIMEOUT_S


def test_durations_use_units_nft_parses() -> None:
    assert nft_duration(MAX_TTL_SECONDS) == "3650d"
    assert nft_duration(1460 * 86400) == "1460d"
    assert nft_duration(86400 + 2 * 3600 + 3 * 60 + 4) == "1d2h3m4s"
    assert nft_duration(59) == "59s"
    for bad in (0, -1, MAX_TTL_SECONDS + 1, 1.5):
        with pytest.raises(ValueError):
            nft_duration(bad)  # type: ignore[arg-type]


def test_native_rendering_never_writes_nine_digit_seconds() -> None:
    text = to_native(compile_state(long_lived_state(), NftConfig(), NOW))
    assert "198.51.100.1 timeout 3650d" in text
    assert "198.51.100.2 timeout 3650d" in text  # 1 ms short of 10 years still rounds up to it
    assert "198.51.100.4 timeout 3650d" in text  # clamped, not an out-of-range value
    assert "198.51.100.3 timeout 1s" in text
    for word in text.split():
        if word.endswith("s") and word[:-1].isdigit():
            assert len(word) - 1 <= 8, word


@pytest.fixture
def netns() -> Iterator[str]:
    if NO_NFT:
        pytest.skip(NO_NFT)
    name = f"mssp-ttl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nft_check(ns: str, data: str, *, json_doc: bool) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, "nft", *(["-j"] if json_doc else []), "-c", "-f", "-"]
    return subprocess.run(argv, input=data, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.root
def test_both_renderers_pass_nft_check_at_the_longest_ttl(netns: str) -> None:
    compiled = compile_state(long_lived_state(), NftConfig(), NOW)
    carry = {"cat_ai_tools_v4": [("192.0.2.200", 86400)]}  # an element with `expires`
    as_json = nft_check(netns, json.dumps(compiled.to_json(carry)), json_doc=True)
    assert as_json.returncode == 0, as_json.stderr
    native = nft_check(netns, to_native(compiled, carry), json_doc=False)
    assert native.returncode == 0, native.stderr


@pytest.mark.root
def test_nine_digit_seconds_is_what_nft_refuses(netns: str) -> None:
    """The premise: this nft refuses what the old renderer wrote, and takes what the new one writes."""
    base = "add table inet t\nadd set inet t s { type ipv4_addr; flags timeout; }\n"
    old = nft_check(netns, base + f"add element inet t s {{ 192.0.2.1 timeout {MAX_TTL_SECONDS}s }}\n",
                    json_doc=False)
    assert old.returncode != 0 and "value too large" in old.stderr
    unit = nft_duration(MAX_TTL_SECONDS)
    new = nft_check(netns, base + f"add element inet t s {{ 192.0.2.1 timeout {unit} }}\n", json_doc=False)
    assert new.returncode == 0, new.stderr
