"""The nft compiler (pure): golden documents, determinism, expiry, validation and injection.

Golden files live in tests/golden/nft/; after an intended change regenerate them with
``MSSP_UPDATE_GOLDEN=1 pytest tests/test_nft_compile.py`` and review the diff.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
from pathlib import Path

import pytest

from gateway_agent.backends import BACKENDS, make_backend
from gateway_agent.backends.base import BackendError
from gateway_agent.backends.nft import NftBackend, endpoint_host
from gateway_agent.nft.compile import Compiled, compile_state, domain_targets
from gateway_agent.nft.config import CompileError, NftConfig, marker_for
from gateway_agent.nft.counters import Monotonic, NftCounterSource
from gateway_agent.nft.delta import compile_delta
from gateway_agent.nft.native import RenderError, to_native
from gateway_agent.nft.validate import parse_address, parse_cidr
from gateway_agent.state import DesiredState, StateChange
from mssp.common.metrics import CATEGORY_BYTES, HOST_EGRESS, HOST_FLOWS, IOC_HITS, IOC_SET_HITS, RULE_HITS
from mssp.common.names import valid_domain, valid_rule_name
from mssp.v1 import common_pb2 as pb

GOLDEN = Path(__file__).parent / "golden" / "nft"
NOW = 1_700_000_000_000
TENANT = "tenant:t1"


def ioc(kind: int, value: str, expires: int = 0) -> pb.Ioc:
    return pb.Ioc(type=kind, value=value, expires_at_ms=expires, confidence=90, source="test")


def make_state(iocs: list[pb.Ioc] = (), policy: pb.PolicyBundle | None = None,  # type: ignore[assignment]
               channel: str = "global") -> DesiredState:
    state = DesiredState(TENANT)
    for i in iocs:
        state.channels[channel].iocs[(i.type, i.value)] = i
    if policy is not None:
        state.policy = policy
    state.channels["global"].seq = 7
    state.channels[TENANT].seq = 3
    return state


def rich_policy() -> pb.PolicyBundle:
    p = pb.PolicyBundle(version=4, default_action=pb.ACTION_DENY)
    p.rules.add(name="block-storage", action=pb.ACTION_DENY, categories=["cloud_storage"])
    p.rules.add(name="web", action=pb.ACTION_ALLOW, cidrs=["198.51.100.0/24", "198.51.100.128/25",
                                                         "2001:db8:80::/48"],
                protocol="tcp", ports=[pb.PortRange(first=80, last=80), pb.PortRange(first=443, last=444)])
    p.rules.add(name="dns-anywhere", action=pb.ACTION_ALLOW, protocol="udp", ports=[pb.PortRange(first=53)])
    p.rules.add(name="watch-paste", action=pb.ACTION_ALERT, domains=["paste.example", "bin.example"])
    p.rules.add(name="ping", action=pb.ACTION_ALLOW, protocol="icmp")
    p.rules.add(name="any-port-8080", action=pb.ACTION_ALLOW, ports=[pb.PortRange(first=8080, last=8081)])
    p.categories["cloud_storage"].domains.extend(["storage.test"])
    p.categories["intranet_saas"].domains.extend(["saas.example"])
    return p


def rich_iocs() -> list[pb.Ioc]:
    return [
        ioc(pb.IOC_TYPE_IPV4, "203.0.113.66"),
        ioc(pb.IOC_TYPE_IPV4, "203.0.113.67", NOW + 2_500),  # 2.5 s left -> timeout 3 s (rounded up)
        ioc(pb.IOC_TYPE_IPV4, "203.0.113.68", NOW - 1),  # expired: not in the kernel at all
        ioc(pb.IOC_TYPE_IPV6, "2001:db8:66::66", NOW + 60_000),
        ioc(pb.IOC_TYPE_CIDR4, "203.0.113.0/24", NOW + 10_000),
        ioc(pb.IOC_TYPE_CIDR4, "203.0.113.128/25"),  # nested, outlives its parent: own element
        ioc(pb.IOC_TYPE_CIDR4, "192.0.2.64/32"),
        ioc(pb.IOC_TYPE_CIDR6, "2001:db8:77::/48"),
        ioc(pb.IOC_TYPE_DOMAIN, "c2.evil.test", NOW + 5_000),
        ioc(pb.IOC_TYPE_DOMAIN, "evil.example"),
    ]


def check_golden(name: str, doc: dict[str, object]) -> None:
    text = json.dumps(doc, indent=1) + "\n"
    path = GOLDEN / name
    if os.environ.get("MSSP_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with MSSP_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file"


CONFIG = NftConfig(lan_ifaces=("lan0",), wan_ifaces=("wan0",),
                   never_block=(ipaddress.ip_network("203.0.113.5/32"),))


def test_golden_empty_state() -> None:
    compiled = compile_state(DesiredState(TENANT), NftConfig(), NOW)
    check_golden("empty.json", compiled.to_json())
    assert compiled.rejected == []


def test_golden_rich_state() -> None:
    compiled = compile_state(make_state(rich_iocs(), rich_policy()), CONFIG, NOW)
    check_golden("rich.json", compiled.to_json())
    assert compiled.rejected == []


def test_same_state_same_document_whatever_the_order() -> None:
    iocs = rich_iocs()
    a = compile_state(make_state(iocs, rich_policy()), CONFIG, NOW).to_json()
    random.Random(4).shuffle(iocs)
    b = compile_state(make_state(iocs, rich_policy()), CONFIG, NOW).to_json()
    assert json.dumps(a) == json.dumps(b)


def _elements(doc: dict[str, list[dict]], set_name: str) -> list[object]:  # type: ignore[type-arg]
    out: list[object] = []
    for cmd in doc["nftables"]:
        body = cmd.get("add", {}).get("element")
        if body and body["name"] == set_name:
            out += body["elem"]
    return out


def test_expiry_becomes_kernel_timeouts() -> None:
    compiled = compile_state(make_state(rich_iocs()), NftConfig(), NOW)
    doc = compiled.to_json()
    v4 = _elements(doc, "ioc_v4")
    assert "203.0.113.66" in v4  # never expires: no timeout
    assert {"elem": {"val": "203.0.113.67", "timeout": 3}} in v4
    assert all("203.0.113.68" not in json.dumps(e) for e in v4)  # already expired: not added
    assert _elements(doc, "ioc_cidr4_p24") == [{"elem": {"val": "203.0.113.0", "timeout": 10}}]
    assert _elements(doc, "ioc_cidr4_p25") == ["203.0.113.128"]
    assert _elements(doc, "ioc_cidr4_p32") == ["192.0.2.64"]
    assert _elements(doc, "ioc_cidr6_p48") == ["2001:db8:77::"]
    assert compiled.sinkholes == {"c2.evil.test": NOW + 5_000, "evil.example": 0}
    text = to_native(compiled)
    assert "203.0.113.67 timeout 3s" in text
    assert "ip daddr & 255.255.255.128 @ioc_cidr4_p25" in text


def test_the_same_element_from_two_channels_keeps_the_later_expiry() -> None:
    state = make_state([ioc(pb.IOC_TYPE_IPV4, "203.0.113.9", NOW + 5_000)])
    state.channels[TENANT].iocs[(pb.IOC_TYPE_IPV4, "203.0.113.9")] = ioc(pb.IOC_TYPE_IPV4, "203.0.113.9",
                                                                        NOW + 50_000)
    assert _elements(compile_state(state, NftConfig(), NOW).to_json(), "ioc_v4") == [
        {"elem": {"val": "203.0.113.9", "timeout": 50}}]
    state.channels[TENANT].iocs[(pb.IOC_TYPE_IPV4, "203.0.113.9")] = ioc(pb.IOC_TYPE_IPV4, "203.0.113.9")
    assert _elements(compile_state(state, NftConfig(), NOW).to_json(), "ioc_v4") == ["203.0.113.9"]


def test_policy_rules_are_ordered_and_counted() -> None:
    doc = compile_state(make_state([], rich_policy()), CONFIG, NOW).to_json()
    egress = [c["add"]["rule"] for c in doc["nftables"] if "rule" in c.get("add", {})
              and c["add"]["rule"]["chain"] == "egress"]
    comments = [r.get("comment", "") for r in egress]
    rule_comments = [c for c in comments if c.startswith("rule_")]
    # rule 0 matches both category sets (v4, v6), rule 1 both families, the rest once each
    assert [c.split()[0] for c in rule_comments] == [
        "rule_0", "rule_0", "rule_1", "rule_1", "rule_2", "rule_3", "rule_3", "rule_4", "rule_5"]
    # never-block first, IOCs next, the default verdict (deny -> reject) last
    assert egress[0]["expr"][0]["match"]["right"] == "@never_block_v4"
    assert egress[2]["expr"][0]["match"]["right"] == "@ioc_v4"
    assert egress[-1]["expr"] == [{"counter": "default"},
                                  {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]
    counters = [c["add"]["counter"]["name"] for c in doc["nftables"] if "counter" in c.get("add", {})]
    assert {"rule_0", "rule_5", "default", "never_block", "ioc_v4", "ioc_cidr6", "cat_cloud_storage",
            "cat_intranet_saas"} <= set(counters)
    # overlapping CIDRs of one rule collapse (nft refuses overlapping intervals in a set)
    web = next(r for r in egress if r.get("comment") == "rule_1 web")
    assert web["expr"][0]["match"]["right"] == {"set": [{"prefix": {"addr": "198.51.100.0", "len": 24}}]}


def test_transaction_replaces_the_table_atomically() -> None:
    doc = compile_state(make_state(), NftConfig(), NOW).to_json()
    table = {"family": "inet", "name": "mssp"}
    assert doc["nftables"][:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                                   {"add": {"table": table}}]
    # every command is about the agent's table and nothing else
    for cmd in doc["nftables"]:
        (_verb, obj), = cmd.items()
        (_, body), = obj.items()
        assert body["family"] == "inet" and body.get("table", body.get("name")) == "mssp"


def test_category_domains_feed_sets_with_parent_inheritance() -> None:
    compiled = compile_state(make_state([], rich_policy()), CONFIG, NOW)
    assert compiled.nftsets["storage.test"] == ["cat_cloud_storage"]
    assert compiled.nftsets["saas.example"] == ["cat_intranet_saas"]
    assert "wetransfer.com" in compiled.nftsets  # built-in lists ship with the agent
    assert set(compiled.nftsets["wetransfer.com"]) == {"cat_cloud_storage", "cat_file_sharing"}
    dom = next(b for b in compiled.nftsets["paste.example"])
    assert dom.startswith("dom_") and compiled.nftsets["bin.example"] == [dom]
    assert domain_targets({"a": ["google.com"], "b": ["drive.google.com"]}) == {
        "drive.google.com": ["a", "b"], "google.com": ["a"]}


def test_delta_adds_and_deletes_without_failing_on_absent_elements() -> None:
    old = ioc(pb.IOC_TYPE_IPV4, "203.0.113.9", NOW + 5_000)
    state = make_state([ioc(pb.IOC_TYPE_CIDR4, "203.0.113.0/26", NOW + 20_000)])
    change = StateChange("global", 8, added=[state.channels["global"].iocs[(pb.IOC_TYPE_CIDR4,
                                                                           "203.0.113.0/26")]],
                         removed=[old])
    delta = compile_delta(state, change, NftConfig(), NOW, cidr_sets=set())
    cmds = delta.doc["nftables"]
    # the new prefix length brings its set and its rule
    assert cmds[0]["add"]["set"]["name"] == "ioc_cidr4_p26"
    assert cmds[1]["add"]["rule"]["chain"] == "ioc_cidr"
    assert delta.new_cidr_sets == {"ioc_cidr4_p26"}
    ops = [(next(iter(c)), c[next(iter(c))].get("element", {}).get("name"),
            c[next(iter(c))].get("element", {}).get("elem")) for c in cmds[2:]]
    assert ops[:3] == [("add", "ioc_cidr4_p26", ["203.0.113.0"]),
                       ("delete", "ioc_cidr4_p26", ["203.0.113.0"]),
                       ("add", "ioc_cidr4_p26", [{"elem": {"val": "203.0.113.0", "timeout": 20}}])]
    # removed and not held elsewhere: add (no-op if present) then delete, never re-added
    assert ops[3:5] == [("add", "ioc_v4", ["203.0.113.9"]), ("delete", "ioc_v4", ["203.0.113.9"])]
    assert ops[5][1] == "applied" and cmds[-1]["add"]["element"]["elem"][0]["elem"]["comment"] == \
        marker_for(state, NftConfig())


def test_delta_keeps_an_element_another_channel_still_holds() -> None:
    state = make_state([ioc(pb.IOC_TYPE_IPV4, "203.0.113.9")], channel=TENANT)
    removed = ioc(pb.IOC_TYPE_IPV4, "203.0.113.9", NOW + 1_000)
    delta = compile_delta(state, StateChange("global", 8, removed=[removed]), NftConfig(), NOW, set())
    cmds = delta.doc["nftables"]
    assert cmds[2] == {"add": {"element": {"family": "inet", "table": "mssp", "name": "ioc_v4",
                                           "elem": ["203.0.113.9"]}}}


def test_delta_domains_go_to_dns() -> None:
    state = make_state([ioc(pb.IOC_TYPE_DOMAIN, "c2.evil.test", NOW + 9_000)])
    gone = ioc(pb.IOC_TYPE_DOMAIN, "old.evil.test")
    added = state.channels["global"].iocs[(pb.IOC_TYPE_DOMAIN, "c2.evil.test")]
    change = StateChange("global", 8, added=[added], removed=[gone])
    delta = compile_delta(state, change, NftConfig(), NOW, set())
    assert delta.domains == {"c2.evil.test": NOW + 9_000, "old.evil.test": None}


# ---- validation and injection ----------------------------------------------------------------

HOSTILE = [
    'x"; flush ruleset; "',
    "x\nadd rule inet mssp egress accept",
    "x } ; delete table inet filter ; {",
    "x#inet#filter#input",
    "evil.test/#",
    "evil.test\nserver=8.8.8.8",
    "a" * 300,
    "{ 1.2.3.4 }",
    "1.2.3.4; accept",
    "1.2.3.4\n",
    " 1.2.3.4",
    "1.2.3.4/24\x00",
    "*.evil.test",
    "EVIL.TEST",
    "evil..test",
    "-evil.test",
    ("a" * 64) + ".test",
]


def hostile_state() -> DesiredState:
    p = pb.PolicyBundle(version=9, default_action=pb.ACTION_ALLOW)
    p.rules.add(name="good", action=pb.ACTION_DENY, cidrs=["198.51.100.0/24"])
    for h in HOSTILE:
        if not valid_rule_name(h):  # "EVIL.TEST", "-evil.test" are rule names the controller takes
            p.rules.add(name=h, action=pb.ACTION_DENY)
        p.rules.add(name="cidr-rule", action=pb.ACTION_DENY, cidrs=[h])
        p.rules.add(name="dom-rule", action=pb.ACTION_DENY, domains=[h])
        p.rules.add(name="cat-rule", action=pb.ACTION_DENY, categories=[h])
        p.categories[h].domains.append("fine.example")
        p.categories["cloud_storage"].domains.append(h)
    p.rules.add(name="bad-proto", action=pb.ACTION_DENY, protocol="tcp; accept")
    p.rules.add(name="icmp-ports", action=pb.ACTION_DENY, protocol="icmp", ports=[pb.PortRange(first=1)])
    p.rules.add(name="bad-ports", action=pb.ACTION_DENY, ports=[pb.PortRange(first=0, last=70000)])
    p.rules.add(name="no-action", cidrs=["198.51.100.0/24"])
    iocs = []
    for h in HOSTILE:
        kinds = (pb.IOC_TYPE_IPV4, pb.IOC_TYPE_IPV6, pb.IOC_TYPE_CIDR4, pb.IOC_TYPE_CIDR6, pb.IOC_TYPE_DOMAIN)
        iocs += [ioc(kind, h) for kind in kinds]
    iocs += [ioc(pb.IOC_TYPE_CIDR4, "0.0.0.0/0"), ioc(pb.IOC_TYPE_CIDR4, "10.0.0.0/7"),
             ioc(pb.IOC_TYPE_CIDR4, "203.0.113.1/24"), ioc(pb.IOC_TYPE_CIDR6, "::/0"),
             ioc(pb.IOC_TYPE_IPV4, "2001:db8::1"), ioc(pb.IOC_TYPE_UNSPECIFIED, "203.0.113.1")]
    return make_state(iocs, p)


def test_hostile_values_never_reach_nft() -> None:
    compiled = compile_state(hostile_state(), NftConfig(), NOW)
    doc_text = json.dumps(compiled.to_json())
    native = to_native(compiled)
    for h in HOSTILE:
        assert json.dumps(h)[1:-1] not in doc_text, h
        assert h not in native, h
    for needle in ("flush ruleset", "delete table inet filter", "accept\"", "0.0.0.0/0", "10.0.0.0/7",
                   "2001:db8::1"):
        assert needle not in native
    # only the valid rule made it; every hostile rule was skipped, not widened to "match all"
    egress_rules = [c["add"]["rule"] for c in compiled.to_json()["nftables"]
                    if "rule" in c.get("add", {}) and c["add"]["rule"].get("comment", "").startswith("rule_")]
    assert [r["comment"] for r in egress_rules] == ["rule_0 good"]
    assert compiled.ioc_elements == {"ioc_v4": {}, "ioc_v6": {}}
    assert compiled.sinkholes == {}
    assert "fine.example" not in compiled.nftsets  # came only with hostile category names
    assert len(compiled.rejected) >= len(HOSTILE) * 9


def test_rule_whose_values_are_all_invalid_is_skipped_not_widened() -> None:
    p = pb.PolicyBundle(default_action=pb.ACTION_ALLOW)
    p.rules.add(name="allow-one", action=pb.ACTION_ALLOW, cidrs=["not-a-cidr"])
    p.rules.add(name="deny-dom", action=pb.ACTION_DENY, domains=["bad domain"])
    compiled = compile_state(make_state([], p), NftConfig(), NOW)
    assert compiled.rule_names == {}
    assert any("rule skipped" in r.reason for r in compiled.rejected)


def test_address_parsers_are_strict() -> None:
    assert parse_address("203.0.113.1", 4) == "203.0.113.1"
    assert parse_address("2001:DB8::1", 6) == "2001:db8::1"  # re-rendered from the parsed bytes
    for bad in ("203.0.113.1 ", "203.0.113", "203.0.113.1/32", "::1%eth0", "203.0.113.01", "", None, 3):
        assert parse_address(bad, 4) is None and parse_address(bad, 6) is None, bad
    assert parse_cidr("203.0.113.0/24", 4) == ("203.0.113.0", 24)
    assert parse_cidr("203.0.113.1/24", 4) is None  # host bits set
    assert parse_cidr("203.0.113.0/٢٤", 4) is None  # unicode digits
    assert parse_cidr("10.0.0.0/7", 4, 8) is None
    assert valid_domain("xn--bcher-kva.example") and not valid_domain("1.2.3.4")
    assert not valid_domain("localhost")


def test_config_is_validated() -> None:
    with pytest.raises(CompileError):
        NftConfig(lan_ifaces=('eth0"; flush ruleset',))
    with pytest.raises(CompileError):
        NftConfig(deny="accept")


def test_native_renderer_refuses_anything_unexpected() -> None:
    compiled = compile_state(make_state(), NftConfig(), NOW)
    for bad in (
        {"add": {"rule": {"family": "inet", "table": "mssp", "chain": "egress; flush ruleset",
                          "expr": [{"accept": None}]}}},
        {"add": {"rule": {"family": "inet", "table": "mssp", "chain": "egress", "expr": [{"match": {
            "op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": "1.2.3.4 accept"}}]}}},
        {"add": {"rule": {"family": "inet", "table": "mssp", "chain": "egress", "comment": 'x" accept',
                          "expr": [{"accept": None}]}}},
        {"add": {"table": {"family": "inet", "name": "filter"}}},
        {"add": {"rule": {"family": "inet", "table": "mssp", "chain": "egress", "expr": [{"queue": None}]}}},
    ):
        tampered = Compiled(**{**compiled.__dict__, "rules": [*compiled.rules, bad]})
        with pytest.raises(RenderError):
            to_native(tampered)


# ---- counters ----------------------------------------------------------------------------------


def test_monotonic_counters_survive_a_reset() -> None:
    m = Monotonic()
    k = (HOST_EGRESS, "192.0.2.10")
    assert m.adjust({k: (5, 500)}) == {k: (5, 500)}
    m.rebase(m.adjust({k: (7, 700)}))  # full apply: kernel counters go back to zero
    assert m.adjust({}) == {k: (7, 700)}  # not counted again yet: still reported
    assert m.adjust({k: (1, 100)}) == {k: (8, 800)}
    assert m.adjust({}) == {}  # the kernel entry timed out: base dropped, restarts from zero
    assert m.adjust({k: (2, 200)}) == {k: (2, 200)}


class FakeRunner:
    netns = None

    def __init__(self, sets: dict[str, dict[str, object]]) -> None:
        self.sets = sets

    def list_sets(self, names: list[str]) -> dict[str, dict[str, object]]:
        return {n: self.sets[n] for n in names if n in self.sets}


def test_counter_source_maps_sets_and_counters_to_samples() -> None:
    def counted(val: object, p: int, b: int) -> dict[str, object]:
        return {"elem": {"val": val, "expires": 100, "counter": {"packets": p, "bytes": b}}}

    runner = FakeRunner({
        "host_v4": {"elem": [counted("192.0.2.10", 10, 1000)]},
        "host_v6": {"elem": [counted("2001:db8:1::10", 1, 80)]},
        "flows_v4": {"elem": [counted("192.0.2.10", 3, 180)]},
        "ioc_hits_v4": {"elem": [counted({"concat": ["192.0.2.10", "203.0.113.70"]}, 2, 120),
                                 counted({"concat": ["192.0.2.10", "bogus; x"]}, 9, 9)]},
        "cathost_cloud_storage_v4": {"elem": [counted("192.0.2.10", 4, 4000)]},
    })
    named = {"rule_0": (4, 240), "default": (1, 60), "ioc_cidr4": (2, 120), "cat_cloud_storage": (4, 4000),
             "stray": (1, 1)}
    source = NftCounterSource(runner, read_counters_fn=lambda netns: named)  # type: ignore[arg-type]
    source.configure(rule_names={"rule_0": "block-storage"}, categories=["cloud_storage"],
                     ioc_lookup=lambda addr: "203.0.113.0/24" if addr.startswith("203.0.113.") else addr)
    samples = {(s.metric, s.dimension): (s.packets, s.bytes) for s in source.read_counters()}
    assert samples == {
        (RULE_HITS, "block-storage"): (4, 240),
        (RULE_HITS, "@default"): (1, 60),
        (IOC_SET_HITS, "ioc_cidr4"): (2, 120),
        (HOST_EGRESS, "192.0.2.10"): (10, 1000),
        (HOST_EGRESS, "2001:db8:1::10"): (1, 80),
        (HOST_FLOWS, "192.0.2.10"): (3, 180),
        (IOC_HITS, "203.0.113.0/24|192.0.2.10"): (2, 120),
        (CATEGORY_BYTES, "cloud_storage|192.0.2.10"): (4, 4000),
    }


# ---- backend construction (no kernel needed) -------------------------------------------------


def test_endpoint_hosts() -> None:
    assert endpoint_host("ctl.example:7443") == "ctl.example"
    assert endpoint_host("nats://n1.example:4222") == "n1.example"
    assert endpoint_host("tls://[2001:db8::5]:4222") == "2001:db8::5"
    assert endpoint_host("[2001:db8::5]:443") == "2001:db8::5"
    assert endpoint_host("2001:db8::5") == "2001:db8::5"
    assert endpoint_host("203.0.113.0/24") == "203.0.113.0/24"


def test_backend_never_block_and_protected_names() -> None:
    backend = NftBackend(never_block=["203.0.113.5:7443", "nats://localhost:4222", "198.51.100.0/24"])
    nets = {str(n) for n in backend.config().never_block}
    assert {"203.0.113.5/32", "198.51.100.0/24", "127.0.0.1/32"} <= nets
    assert backend._protected("localhost")
    with pytest.raises(ValueError):
        NftBackend(never_block=["bad host name;"])
    with pytest.raises(CompileError):
        NftBackend(wan_ifaces=["wan0 }"])


def test_cli_offers_the_nft_backend(tmp_path: Path) -> None:
    identity = {"tenant_id": "t1", "tenant_name": "acme", "gateway_id": "g1", "gateway_name": "gw1",
                "controller": "203.0.113.5:7443", "gateway_endpoint": "ctl.mssp.test:7443",
                "nats_urls": ["nats://203.0.113.6:4222"], "signing_public_key_hex": "00" * 32}
    (tmp_path / "identity.json").write_text(json.dumps(identity))
    (tmp_path / "enforcement.json").write_text(json.dumps({"wan_ifaces": ["wan"], "dns": {
        "listen": ["192.0.2.1"], "upstreams": ["203.0.113.53"], "sinkhole": "null"}}))
    assert "nft" in BACKENDS
    backend = make_backend("nft", tmp_path)
    assert isinstance(backend, NftBackend) and backend.dns is not None
    assert backend.dns_query_log() == tmp_path / "dns" / "queries.log"  # what telemetry reads
    assert backend.wan_ifaces == ("wan",)
    assert {"203.0.113.5/32", "203.0.113.6/32", "203.0.113.53/32"} <= {str(n) for n in
                                                                         backend.never_block_networks}
    assert backend._protected("mssp.test")  # the gRPC endpoint's name can never be sinkholed
    (tmp_path / "enforcement.json").write_text(json.dumps({"dns": {"listen": ["192.0.2.1; x"]}}))
    with pytest.raises(BackendError, match=r"^nft backend: "):
        make_backend("nft", tmp_path)
