"""One naming rule for controller and agent (mssp.common.names).

The controller accepted rule names with upper case and dots and domains with '_' that the agent's
compiler then dropped (a rule skipped whole, a domain never sinkholed) while the gateway reported
itself converged. Here names the controller accepts go through the controller's own parsers and on
into the agent's compiler (nft JSON and native syntax, dnsmasq configuration): nothing is refused,
and the root tests load them into nft (``nft -c``) and into a real dnsmasq.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.domain.ioc import parse_domain, parse_ioc
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.yaml_reader import parse_policy_yaml
from gateway_agent.dns.config import DnsPlan, DnsSettings, render_main, render_servers
from gateway_agent.dns.dnsmasq import DnsmasqManager
from gateway_agent.nft.compile import Compiled, compile_state
from gateway_agent.nft.config import NftConfig
from gateway_agent.nft.native import to_native
from gateway_agent.refusals import Refusal, RefusalBook, report_fields
from gateway_agent.state import DesiredState
from mssp.common.names import domain_problem, valid_domain, valid_rule_name
from mssp.v1 import common_pb2, push_pb2
from tests.support.netns import dns_lookup
from tests.test_dnsmasq_config import free_port, wait_for

NOW = 1_700_000_000_000
TENANT = "tenant:t1"
BEACON = "c2_beacon.evil.example"
POLICY = f"""\
default_action: allow
rules:
  - name: Block-AI
    action: deny
    categories: [ai_tools]
  - name: no.ai
    action: deny
    domains: [{BEACON}, chat.example]
  - name: Web_2.0-ok
    action: allow
    cidrs: [203.0.113.0/24]
"""


def controller_state() -> DesiredState:
    """The agent's state after the controller parsed POLICY and an IOC for BEACON, as it pushes them."""
    bundle = policy_to_bundle(parse_policy_yaml(POLICY), 3)
    parsed = parse_ioc(BEACON.upper() + ".")
    ioc = common_pb2.Ioc(type=int(parsed.kind), value=parsed.value, confidence=80, source="operator")
    assert ioc.value == BEACON  # canonicalised by the controller, '_' kept
    state = DesiredState(TENANT)
    state.apply(push_pb2.Push(channel=TENANT, seq=1, policy=bundle))
    state.apply(push_pb2.Push(channel="global", seq=1, iocs=push_pb2.IocDelta(upsert=[ioc])))
    return state


def compiled_state() -> Compiled:
    return compile_state(controller_state(), NftConfig(), NOW)


def test_controller_accepted_names_are_enforced_by_the_compiler() -> None:
    compiled = compiled_state()
    assert compiled.rejected == []
    assert sorted(compiled.rule_names.values()) == ["Block-AI", "Web_2.0-ok", "no.ai"]
    comments = [c["add"]["rule"].get("comment", "") for c in compiled.to_json()["nftables"]
                if "rule" in c.get("add", {})]
    for name in ("Block-AI", "no.ai", "Web_2.0-ok"):
        assert any(c.endswith(f" {name}") for c in comments), name
    native = to_native(compiled)
    assert 'comment "rule_0 Block-AI"' in native and 'comment "rule_1 no.ai"' in native
    assert compiled.sinkholes == {BEACON: 0}
    assert BEACON in compiled.nftsets  # the rule's domain set is filled from its answers


def test_dnsmasq_lines_for_a_domain_with_an_underscore(tmp_path: Path) -> None:
    compiled = compiled_state()
    settings = DnsSettings(directory=tmp_path / "dns")
    assert f"server=/{BEACON}/" in render_servers(settings, compiled.sinkholes, NOW).splitlines()
    main = render_main(settings, compiled.nftsets, tmp_path / "s", tmp_path / "p")
    assert any(line.startswith(f"nftset=/{BEACON}/4#inet#mssp#dom_") for line in main.splitlines())


def test_every_domain_the_controller_stores_passes_the_agents_check() -> None:
    for raw in (BEACON, "_dmarc.Example.COM.", "bücher.example", "xn--bcher-kva.example", "a_.b-c.example",
                "x1.y2.museum", "WWW.Example.Org", "ex--ample.com"):
        canonical = parse_domain(raw)
        assert valid_domain(canonical) and domain_problem(canonical) is None, (raw, canonical)
    for rule in ("Block-AI", "no.ai", "_", "a" * 64, "-x-", "1.2.3"):
        assert valid_rule_name(rule), rule


def test_the_shared_check_still_refuses_what_dnsmasq_or_nft_must_never_see() -> None:
    for bad in ("evil.test/#", "evil test", "evil.test\nserver=8.8.8.8", 'a".test', "Evil.test", "a..b",
                "-a.test", "a.test.", "a.b1", "1.2.3.4", "localhost", "a#b.test", "a,b.test",
                "x" * 64 + ".test"):
        assert not valid_domain(bad) and domain_problem(bad) is not None, bad
    for bad in ("", "a b", 'a"', "a\n", "a" * 65, "a;b", "ä"):
        assert not valid_rule_name(bad), bad


def test_refusal_book_tracks_what_is_in_force() -> None:
    book = RefusalBook()
    rule = Refusal("rule", "x", "no action: rule skipped")
    book.replace([rule, Refusal("ioc", "10.0.0.0/7", "too wide")])
    assert [r.value for r in book.current] == ["x", "10.0.0.0/7"]
    book.update_iocs(["10.0.0.0/7", "198.51.100.1"], [Refusal("ioc", "198.51.100.1", "odd")])
    assert [r.value for r in book.current] == ["x", "198.51.100.1"]
    book.replace([])
    assert book.current == ()
    many = tuple(Refusal("ioc", f"v{i}", "r" * 1000) for i in range(80))
    fields = report_fields(many)
    assert fields["refusals_total"] == 80 and len(fields["refusals"]) == 50  # type: ignore[arg-type]
    assert len(fields["refusals"][0].reason) == 256  # type: ignore[index]


# ---- the real tools ---------------------------------------------------------------------------

NO_ROOT = ("needs root, ip, nft and dnsmasq" if os.geteuid() != 0
           or not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")) else None)


@pytest.fixture
def netns() -> Iterator[str]:
    if NO_ROOT:
        pytest.skip(NO_ROOT)
    name = f"mssp-names-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.root
def test_nft_takes_both_renderings_of_those_names(netns: str) -> None:
    compiled = compiled_state()
    for data, flags in ((json.dumps(compiled.to_json()), ["-j"]), (to_native(compiled), [])):
        proc = subprocess.run(["ip", "netns", "exec", netns, "nft", *flags, "-c", "-f", "-"], input=data,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[int]:
    """An authoritative dnsmasq on loopback that answers for BEACON."""
    if NO_ROOT:
        pytest.skip(NO_ROOT)
    port = free_port()
    conf = tmp_path / "upstream.conf"
    conf.write_text("\n".join([
        "no-resolv", "no-hosts", "bind-interfaces", "listen-address=127.0.0.1", f"port={port}", "user=root",
        f"pid-file={tmp_path / 'upstream.pid'}", f"address=/{BEACON}/203.0.113.66",
        "address=/ok.example/198.51.100.80",
    ]) + "\n")
    proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: dns_lookup("127.0.0.1", "ok.example", port=port, timeout=0.3)[0] == 0)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.root
def test_dnsmasq_sinkholes_a_domain_with_an_underscore(tmp_path: Path, upstream: int) -> None:
    port = free_port()
    manager = DnsmasqManager(DnsSettings(directory=tmp_path / "dns", listen=("127.0.0.1",), port=port,
                                         upstreams=(f"127.0.0.1#{upstream}",), sink_port=free_port()))
    try:
        manager.apply(DnsPlan({}, {}))
        assert dns_lookup("127.0.0.1", BEACON, port=port) == (0, ["203.0.113.66"])
        compiled = compiled_state()
        manager.apply(DnsPlan(compiled.sinkholes, compiled.nftsets))
        wait_for(lambda: dns_lookup("127.0.0.1", BEACON, port=port) == (3, []))  # NXDOMAIN
        assert dns_lookup("127.0.0.1", "sub." + BEACON, port=port) == (3, [])
        assert dns_lookup("127.0.0.1", "ok.example", port=port) == (0, ["198.51.100.80"])
    finally:
        manager.stop()


@pytest.mark.root
def test_the_kernel_backend_reports_and_clears_refusals_per_delta(netns: str) -> None:
    from gateway_agent.backends.nft import NftBackend
    from mssp.v1 import common_pb2 as pb

    backend = NftBackend(netns=netns)
    state = DesiredState(TENANT)
    seq = 0

    def push(**iocs: list[pb.Ioc]) -> None:
        nonlocal seq
        seq += 1
        change = state.apply(push_pb2.Push(channel="global", seq=seq, iocs=push_pb2.IocDelta(**iocs)))
        assert change is not None and not change.full
        backend.apply_delta(state, change)

    try:
        policy = pb.PolicyBundle(version=1, default_action=pb.ACTION_ALLOW)
        policy.rules.add(name="No.Action")  # no action: skipped, and said so
        state.apply(push_pb2.Push(channel=TENANT, seq=1, policy=policy))
        backend.apply_full(state)
        assert [(r.kind, r.value) for r in backend.refusals()] == [("rule", "No.Action")]
        bad = pb.Ioc(type=pb.IOC_TYPE_IPV4, value="2001:db8::1")  # an IPv6 address sent as IPv4
        good = pb.Ioc(type=pb.IOC_TYPE_IPV4, value="198.51.100.9")
        push(upsert=[bad, good])
        assert [(r.kind, r.value) for r in backend.refusals()] == [("rule", "No.Action"), ("ioc", bad.value)]
        push(remove=[bad])
        assert [(r.kind, r.value) for r in backend.refusals()] == [("rule", "No.Action")]
        push(remove=[bad])  # removing it again refuses nothing new
        assert len(backend.refusals()) == 1
    finally:
        backend.remove()
