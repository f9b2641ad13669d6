"""The nft backend and dnsmasq enforcing real traffic between network namespaces.

LAN host -> gateway (the backend applies `inet mssp` there, dnsmasq answers the LAN) -> WAN
(TCP servers on documentation addresses, an authoritative dnsmasq). See tests/support/netns.py.
Policy denies reject (the connection fails at once); IOC drops are silent, so a probe at one
of those waits for its 1 s connect timeout. Nothing here asserts on elapsed time: checks that
depend on the kernel or dnsmasq catching up poll until they hold.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway_agent.backends.nft as nft_backend
from gateway_agent.backends.base import ApplyError
from gateway_agent.backends.nft import NftBackend
from gateway_agent.dns.config import DnsSettings
from gateway_agent.nft.compile import Compiled
from gateway_agent.state import DesiredState, StateChange
from mssp.common.clock import now_ms
from mssp.common.metrics import CATEGORY_BYTES, HOST_EGRESS, HOST_FLOWS, IOC_HITS, IOC_SET_HITS, RULE_HITS
from mssp.v1 import common_pb2 as pb
from mssp.v1 import push_pb2
from tests.support.netns import (
    C2,
    C2_V6,
    CONTROLLER,
    GW_LAN,
    LAN_HOST,
    OTHER,
    STORAGE,
    WAN_DNS,
    WEB,
    WEB_V6,
    Topology,
    missing_requirements,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or ""),
]

TENANT = "tenant:t1"
ROOT = Path(__file__).resolve().parents[1]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology.create(tmp_path_factory.mktemp("netns")) as t:
        yield t


class Gateway:
    """A backend plus the agent's desired state, moved forward by pushes like the runtime does."""

    def __init__(self, backend: NftBackend) -> None:
        self.backend = backend
        self.state = DesiredState(TENANT)
        self.seq = {"global": 0, TENANT: 0}

    def _push(self, channel: str, **body: Any) -> StateChange:
        self.seq[channel] += 1
        change = self.state.apply(push_pb2.Push(channel=channel, seq=self.seq[channel], **body))
        assert change is not None
        if change.full:
            self.backend.apply_full(self.state)
        else:
            self.backend.apply_delta(self.state, change)
        return change

    def policy(self, policy: pb.PolicyBundle) -> None:
        self._push(TENANT, policy=policy)

    def iocs(self, upsert: list[pb.Ioc] = (), remove: list[pb.Ioc] = (),  # type: ignore[assignment]
             channel: str = "global") -> None:
        self._push(channel, iocs=push_pb2.IocDelta(upsert=upsert, remove=remove))


Gw = Callable[..., Gateway]


@pytest.fixture
def gateway(topo: Topology, tmp_path: Path) -> Iterator[Gw]:
    made: list[NftBackend] = []

    def make(*, sinkhole: str = "nxdomain", **kw: Any) -> Gateway:
        dns = DnsSettings(directory=tmp_path / f"dns{len(made)}", listen=(GW_LAN,), upstreams=(WAN_DNS,),
                          netns=topo.gw, sinkhole=sinkhole)
        backend = NftBackend(netns=topo.gw, lan_ifaces=["lan0"], wan_ifaces=["wan0"],
                             never_block=[f"{CONTROLLER}:7443"], dns=dns, **kw)
        made.append(backend)
        gw = Gateway(backend)
        backend.apply_full(gw.state)
        return gw

    try:
        yield make
    finally:
        for backend in made:
            backend.close()
            backend.remove()
        topo.nft("delete", "table", "inet", "mssp", check=False)


def ip4(value: str, expires: int = 0) -> pb.Ioc:
    return pb.Ioc(type=pb.IOC_TYPE_IPV4, value=value, expires_at_ms=expires)


VOLATILE = ("handle", "expires", "packets", "bytes")


def listing(topo: Topology) -> list[Any]:
    """The table as nft lists it, minus what the kernel assigns or time changes.

    Dropped: handles (the re-created table gets a new one), element `expires` (a clock) and
    counter values (the gateway's own MLD/ND traffic counts as never-block hits).
    """
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(json.loads(topo.nft("-j", "list", "table", "inet", "mssp"))["nftables"])


# ---- IOCs -----------------------------------------------------------------------------------


def test_ioc_address_blocks_until_a_delta_removes_it(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    assert topo.probe([WEB, C2]) == {WEB: True, C2: True}
    gw.iocs(upsert=[ip4(C2)])
    assert topo.probe([WEB, C2]) == {WEB: True, C2: False}
    assert gw.backend.verify(gw.state)
    gw.iocs(remove=[ip4(C2)])
    assert topo.probe([WEB, C2]) == {WEB: True, C2: True}
    assert gw.backend.verify(gw.state)
    gw.iocs(remove=[ip4(OTHER)])  # removing what was never there is not an error
    assert gw.backend.verify(gw.state)


def test_delta_rebuilds_a_table_removed_behind_its_back(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    topo.nft("delete", "table", "inet", "mssp")  # an operator's `nft flush ruleset`, say
    gw.iocs(upsert=[ip4(C2)])  # the delta fails in the kernel; the backend applies everything
    assert topo.probe([C2, WEB]) == {C2: False, WEB: True}
    assert gw.backend.verify(gw.state)


def test_ipv6_and_cidr_iocs_block(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    gw.iocs(upsert=[
        pb.Ioc(type=pb.IOC_TYPE_IPV6, value=WEB_V6),
        pb.Ioc(type=pb.IOC_TYPE_CIDR4, value="198.51.100.0/27"),  # holds STORAGE (.30), not WEB (.80)
        pb.Ioc(type=pb.IOC_TYPE_CIDR6, value="2001:db8:66::/48"),  # holds C2_V6
    ])
    assert topo.probe([WEB_V6, STORAGE, C2_V6, WEB, C2]) == {
        WEB_V6: False, STORAGE: False, C2_V6: False, WEB: True, C2: True}


def test_ioc_expires_in_the_kernel_without_the_agent(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    gw.iocs(upsert=[ip4(C2, now_ms() + 2_500), ip4(OTHER)])
    assert topo.probe([C2, OTHER]) == {C2: False, OTHER: False}
    gw.backend.close()  # the agent stops; nothing of it runs any more
    del gw
    wait_for(lambda: topo.connect(C2, timeout=0.5))  # the element timed out in the kernel
    assert not topo.connect(OTHER)  # a non-expiring IOC keeps blocking


def test_ruleset_stays_after_the_agent_is_killed(topo: Topology, gateway: Gw) -> None:
    gateway()  # DNS and cleanup as for the others; the agent under test is a separate process
    state = DesiredState(TENANT)
    state.apply(push_pb2.Push(channel="global", seq=1, iocs=push_pb2.IocDelta(upsert=[ip4(C2)])))
    pushes = [p.SerializeToString().hex() for p in state.snapshot_pushes()]
    script = "\n".join([
        "import json, sys, time",
        f"sys.path.insert(0, {str(ROOT)!r})",
        "from gateway_agent.backends.nft import NftBackend",
        "from gateway_agent.state import DesiredState",
        "from mssp.v1 import push_pb2",
        f"state = DesiredState({TENANT!r})",
        "for h in json.loads(sys.argv[1]):",
        "    state.apply(push_pb2.Push.FromString(bytes.fromhex(h)))",
        f"backend = NftBackend(never_block=[{CONTROLLER!r}], lan_ifaces=['lan0'], wan_ifaces=['wan0'])",
        "backend.apply_full(state)",
        "print('applied', flush=True)",
        "time.sleep(600)",
    ])
    agent = topo.spawn(topo.gw, [sys.executable, "-c", script, json.dumps(pushes)], ready="applied")
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    assert topo.probe([C2, WEB]) == {C2: False, WEB: True}
    assert "mssp g=1 t=0" in topo.nft("list", "set", "inet", "mssp", "applied")


# ---- DNS --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "answer"), [("nxdomain", (3, [])), ("null", (0, ["0.0.0.0"]))])
def test_domain_ioc_is_sinkholed(topo: Topology, gateway: Gw, mode: str,
                                 answer: tuple[int, list[str]]) -> None:
    gw = gateway(sinkhole=mode)
    assert topo.dns_query("c2.evil.test") == (0, [C2])
    gw.iocs(upsert=[pb.Ioc(type=pb.IOC_TYPE_DOMAIN, value="c2.evil.test")])
    wait_for(lambda: topo.dns_query("c2.evil.test") == answer)  # SIGHUP: re-read a few ms later
    assert topo.dns_query("beacon.c2.evil.test") == answer  # subdomains too
    assert topo.dns_query("www.ok.test") == (0, [WEB])
    gw.iocs(remove=[pb.Ioc(type=pb.IOC_TYPE_DOMAIN, value="c2.evil.test")])
    wait_for(lambda: topo.dns_query("c2.evil.test") == (0, [C2]))


def test_category_deny_after_resolution(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    policy = pb.PolicyBundle(version=2, default_action=pb.ACTION_ALLOW)
    policy.rules.add(name="no-cloud-storage", action=pb.ACTION_DENY, categories=["cloud_storage"])
    policy.categories["cloud_storage"].domains.append("storage.test")
    gw.policy(policy)
    assert topo.connect(STORAGE)  # nothing resolved yet: the category set is empty
    assert topo.dns_query("files.storage.test") == (0, [STORAGE])  # dnsmasq fills cat_cloud_storage_v4
    assert STORAGE in topo.nft("list", "set", "inet", "mssp", "cat_cloud_storage_v4")
    assert topo.probe([STORAGE, WEB]) == {STORAGE: False, WEB: True}
    hits = {(s.metric, s.dimension): s.packets for s in gw.backend.read_counters()}
    assert hits[(RULE_HITS, "no-cloud-storage")] >= 1
    # a policy change (full apply) keeps what dnsmasq learned: still blocked without a new lookup
    policy.version = 3
    gw.policy(policy)
    assert not topo.connect(STORAGE)


def test_default_deny_with_an_allow_rule(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    policy = pb.PolicyBundle(version=5, default_action=pb.ACTION_DENY)
    policy.rules.add(name="web", action=pb.ACTION_ALLOW, cidrs=[f"{WEB}/32", "2001:db8:80::/48"],
                     protocol="tcp", ports=[pb.PortRange(first=80, last=80)])
    gw.policy(policy)
    assert topo.probe([WEB, WEB_V6, STORAGE, C2]) == {WEB: True, WEB_V6: True, STORAGE: False, C2: False}
    assert topo.dns_query("www.ok.test") == (0, [WEB])  # the gateway's resolver and its upstream still work
    assert topo.connect(CONTROLLER)  # never-block comes before the default verdict


def test_never_block_addresses_stay_reachable_under_an_ioc(topo: Topology,
                                                           gateway: Gw) -> None:
    gw = gateway()
    gw.iocs(upsert=[pb.Ioc(type=pb.IOC_TYPE_CIDR4, value="203.0.113.0/24")])  # holds the controller and DNS
    assert topo.probe([CONTROLLER, C2, OTHER]) == {CONTROLLER: True, C2: False, OTHER: False}
    # the router's own traffic (output hook) too
    assert topo.probe([CONTROLLER, C2], ns=topo.gw) == {CONTROLLER: True, C2: False}
    assert topo.dns_query("www.ok.test") == (0, [WEB])  # upstream 203.0.113.53 is never blocked


# ---- apply semantics --------------------------------------------------------------------------


def test_reapply_is_identical_and_native_matches_json(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    policy = pb.PolicyBundle(version=7, default_action=pb.ACTION_ALLOW)
    policy.rules.add(name="no-storage", action=pb.ACTION_DENY, categories=["cloud_storage"], protocol="tcp",
                     ports=[pb.PortRange(first=80, last=443)])
    policy.rules.add(name="web", action=pb.ACTION_ALLOW, cidrs=[f"{WEB}/32"])
    gw.policy(policy)
    gw.iocs(upsert=[ip4(C2), ip4(OTHER, now_ms() + 600_000),
                    pb.Ioc(type=pb.IOC_TYPE_CIDR4, value="198.51.100.0/27"),
                    pb.Ioc(type=pb.IOC_TYPE_CIDR6, value="2001:db8:66::/48")])
    gw.backend.apply_full(gw.state)
    first = listing(topo)
    gw.backend.apply_full(gw.state)
    assert listing(topo) == first
    rules = [json.dumps(o["rule"], sort_keys=True) for o in first if "rule" in o]
    assert len(rules) == len(set(rules))  # no rule twice
    # the same state sent in nft syntax (the path for big sets) lists exactly the same
    gw.backend.native_threshold = 0
    gw.backend.apply_full(gw.state)
    assert listing(topo) == first
    assert gw.backend.verify(gw.state)
    assert topo.probe([C2, WEB]) == {C2: False, WEB: True}


@pytest.mark.parametrize("native", [False, True])
def test_failed_apply_keeps_the_previous_ruleset(topo: Topology, gateway: Gw,
                                                 monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    gw = gateway()
    gw.iocs(upsert=[ip4(C2)])
    before = listing(topo)
    good = nft_backend.compile_state

    def broken(*args: Any, **kw: Any) -> Compiled:
        """Valid syntax the kernel refuses: two elements into a set of size 1."""
        compiled = good(*args, **kw)
        table = {"family": "inet", "table": "mssp", "name": "tiny"}
        compiled.head.append({"add": {"set": {**table, "type": "ipv4_addr", "size": 1}}})
        compiled.static_elements.append({"add": {"element": {**table, "elem": ["192.0.2.1", "192.0.2.2"]}}})
        return compiled

    monkeypatch.setattr(nft_backend, "compile_state", broken)
    gw.backend.native_threshold = 0 if native else 10_000
    new_state = DesiredState(TENANT)
    new_state.apply(push_pb2.Push(channel="global", seq=5, snapshot=push_pb2.SnapshotPart(
        index=0, last=True, iocs=[ip4(OTHER)])))
    with pytest.raises(ApplyError):
        gw.backend.apply_full(new_state)
    assert listing(topo) == before
    assert gw.backend.verify(gw.state) and not gw.backend.verify(new_state)
    assert topo.probe([C2, OTHER]) == {C2: False, OTHER: True}


def test_other_tables_are_never_touched(topo: Topology, gateway: Gw) -> None:
    topo.nft("add", "table", "inet", "tenant_fw")
    topo.nft("add", "chain", "inet", "tenant_fw", "c")
    topo.nft("add", "rule", "inet", "tenant_fw", "c", "ip", "daddr", "192.0.2.200", "accept")
    try:
        before = topo.nft("list", "table", "inet", "tenant_fw")
        gw = gateway()
        gw.iocs(upsert=[ip4(C2)])
        gw.backend.apply_full(gw.state)
        gw.backend.remove()
        assert topo.nft("list", "table", "inet", "tenant_fw") == before
        assert "mssp" not in topo.nft("list", "tables")
    finally:
        topo.nft("delete", "table", "inet", "tenant_fw", check=False)


def test_golden_documents_pass_nft_check(topo: Topology) -> None:
    for path in sorted((ROOT / "tests" / "golden" / "nft").glob("*.json")):
        topo.exec(topo.gw, "nft", "-j", "-c", "-f", str(path))


# ---- counters ---------------------------------------------------------------------------------


def test_counters_grow_with_traffic(topo: Topology, gateway: Gw) -> None:
    gw = gateway()
    policy = pb.PolicyBundle(version=1, default_action=pb.ACTION_ALLOW)
    policy.rules.add(name="watch-storage", action=pb.ACTION_ALERT, categories=["cloud_storage"])
    policy.categories["cloud_storage"].domains.append("storage.test")
    gw.policy(policy)
    gw.iocs(upsert=[pb.Ioc(type=pb.IOC_TYPE_CIDR4, value="203.0.113.64/26")])

    def counters() -> dict[tuple[str, str], tuple[int, int]]:
        return {(s.metric, s.dimension): (s.packets, s.bytes) for s in gw.backend.read_counters()}

    before = counters()
    assert topo.dns_query("files.storage.test") == (0, [STORAGE])
    assert topo.probe([WEB, STORAGE, C2], payload=20_000) == {WEB: True, STORAGE: True, C2: False}
    after = counters()
    host = after[(HOST_EGRESS, LAN_HOST)]
    assert host[1] >= before.get((HOST_EGRESS, LAN_HOST), (0, 0))[1] + 40_000  # two 20 kB uploads got out
    assert after[(HOST_FLOWS, LAN_HOST)][0] >= before.get((HOST_FLOWS, LAN_HOST), (0, 0))[0] + 2
    assert after[(CATEGORY_BYTES, f"cloud_storage|{LAN_HOST}")][1] >= 20_000
    assert after[(IOC_HITS, f"203.0.113.64/26|{LAN_HOST}")][0] >= 1
    assert after[(IOC_SET_HITS, "ioc_cidr4")][0] > before[(IOC_SET_HITS, "ioc_cidr4")][0]
    assert after[(RULE_HITS, "watch-storage")][0] > before.get((RULE_HITS, "watch-storage"), (0, 0))[0]
    assert after[(RULE_HITS, "@default")][0] > before[(RULE_HITS, "@default")][0]
    # a full apply recreates the table; reported counters do not go back
    policy.version = 2
    gw.policy(policy)
    again = counters()
    for key, (packets, nbytes) in after.items():
        assert again[key][0] >= packets and again[key][1] >= nbytes, key
