"""nft backend apply cost: full atomic applies of 10k/100k/1M IPv4 and 100k IPv6 IOCs, a 1k delta on
a 1M set, and the floor (a plain `nft -f` of the same elements). Prints one JSON document.

Runs as root in a throwaway network namespace it creates and deletes. Each scenario runs in a fresh
child process (the "agent"), so its peak RSS (VmHWM) is the agent's alone; nft's peak RSS is
sampled from its own VmHWM. Elements only sit in sets, no traffic is sent: IPv4 singles come
from 100.64.0.0/10 (shared address space) and IPv4 CIDRs (/24) from 240.0.0.0/4 (reserved), IPv6
from 2001:db8::/32 (documentation). Half the IOCs expire (1-30 days), half never.

    sudo .venv/bin/python bench/nft_apply.py [--sizes 10000 100000 1000000] [--skip-json-1m]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway_agent.backends.nft import NftBackend
from gateway_agent.nft.runner import NftRunner
from gateway_agent.nft.timeouts import timeout_seconds
from gateway_agent.state import DesiredState, StateChange
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2 as pb

TENANT = "tenant:bench"
V4_SINGLE = int(ipaddress.IPv4Address("100.64.0.0"))
V4_CIDR = int(ipaddress.IPv4Address("240.0.0.0"))
DAY_MS = 86_400_000


def gen_iocs(n: int, family: int, seed: int, offset: int = 0) -> list[pb.Ioc]:
    """n IOCs, 70% single addresses and 30% CIDRs, half of them expiring; deterministic."""
    rng = random.Random(seed)
    now = now_ms()
    out = []
    n_cidr = n * 3 // 10
    for i in range(n):
        expires = now + rng.randrange(1, 31) * DAY_MS if i % 2 else 0
        j = i + offset
        if i < n - n_cidr:
            if family == 4:
                value, kind = str(ipaddress.IPv4Address(V4_SINGLE + j)), pb.IOC_TYPE_IPV4
            else:
                value, kind = str(ipaddress.IPv6Address((0x20010DB8 << 96) | j)), pb.IOC_TYPE_IPV6
        elif family == 4:
            value, kind = f"{ipaddress.IPv4Address(V4_CIDR + (j << 8))}/24", pb.IOC_TYPE_CIDR4
        else:
            # /64s under 2001:db8:1::/48 and up
            net = (0x20010DB8 << 96) | ((1 + (j >> 16)) << 80) | ((j & 0xFFFF) << 64)
            value, kind = f"{ipaddress.IPv6Address(net)}/64", pb.IOC_TYPE_CIDR6
        out.append(pb.Ioc(type=kind, value=value, expires_at_ms=expires, confidence=80, source="bench"))
    return out


def state_with(iocs: list[pb.Ioc]) -> DesiredState:
    state = DesiredState(TENANT)
    channel = state.channels["global"]
    channel.iocs = {(i.type, i.value): i for i in iocs}
    channel.seq = 1
    return state


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


Done = subprocess.CompletedProcess[bytes]


def run_measured(argv: list[str], data: bytes = b"") -> tuple[Done, float, float]:
    """(result, seconds, peak RSS MB) of a process fed `data` on stdin.

    The peak is sampled from /proc/<pid>/status VmHWM every 5 ms: rusage cannot tell it, since a
    child's ru_maxrss starts from its parent's RSS at fork (a 1 GB agent would show as a 1 GB nft).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[bytes] = []
    feeder = threading.Thread(target=lambda: out.extend(proc.communicate(data)))
    feeder.start()
    peak = 0
    while feeder.is_alive():
        peak = max(peak, _hwm_kb(proc.pid))
        time.sleep(0.005)
    feeder.join()
    elapsed = time.perf_counter() - start
    return subprocess.CompletedProcess(argv, proc.returncode, out[0], out[1]), elapsed, peak / 1024


class TimedRunner(NftRunner):
    """Counts the time spent inside nft processes (the rest of an apply is the agent's Python)."""

    nft_seconds = 0.0
    nft_peak_mb = 0.0

    def _run(self, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
        result, elapsed, peak = run_measured(self.argv(*args), data)
        self.nft_seconds += elapsed
        self.nft_peak_mb = max(self.nft_peak_mb, peak)
        return result


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- child: one scenario in a fresh process ----------------------------------------------------


def child(args: dict[str, Any]) -> dict[str, Any]:
    ns = args["netns"]
    runner = TimedRunner(ns)
    runner.delete_table()
    time.sleep(args.get("settle", 0))  # let the kernel finish freeing the previous scenario's sets
    threshold = 10**12 if args.get("json") else 10_000
    backend = NftBackend(runner=runner, native_threshold=threshold)
    t0 = time.perf_counter()
    iocs = gen_iocs(args["n"], args["family"], seed=1)
    state = state_with(iocs)
    result: dict[str, Any] = {"elements": args["n"], "state_build_s": round(time.perf_counter() - t0, 3),
                              "rss_after_state_mb": round(vm_rss_mb(), 1)}
    runner.nft_seconds = 0.0
    start = time.perf_counter()
    backend.apply_full(state)
    elapsed = time.perf_counter() - start
    result.update({
        "format": "json" if args["n"] <= threshold else "native",
        "apply_s": round(elapsed, 3),
        "nft_s": round(runner.nft_seconds, 3),
        "agent_python_s": round(elapsed - runner.nft_seconds, 3),
    })
    if args.get("reapply"):
        runner.nft_seconds = 0.0
        start = time.perf_counter()
        backend.apply_full(state)
        result["reapply_over_existing_s"] = round(time.perf_counter() - start, 3)
    if args.get("delta"):
        removed = iocs[: args["delta"] // 2]
        added = gen_iocs(args["delta"] - len(removed), args["family"], seed=2, offset=args["n"])
        change = StateChange("global", 2, added=added, removed=removed)
        for ioc in removed:
            del state.channels["global"].iocs[(ioc.type, ioc.value)]
        for ioc in added:
            state.channels["global"].iocs[(ioc.type, ioc.value)] = ioc
        state.channels["global"].seq = 2
        runner.nft_seconds = 0.0
        start = time.perf_counter()
        backend.apply_delta(state, change)
        result["delta"] = {"elements": args["delta"], "apply_s": round(time.perf_counter() - start, 4),
                           "nft_s": round(runner.nft_seconds, 4), "verified": backend.verify(state)}
        start = time.perf_counter()
        samples = backend.read_counters()
        result["read_counters_s"] = round(time.perf_counter() - start, 4)
        result["counter_samples"] = len(samples)
        start = time.perf_counter()
        result["verify"] = backend.verify(state)
        result["verify_s"] = round(time.perf_counter() - start, 4)
        half = args["delta"] // 2
        fresh = gen_iocs(args["delta"] - half, args["family"], seed=3, offset=args["n"] + args["delta"])
        result["delta"]["floor_nft_f_s"] = round(floor_delta(ns, iocs[half:2 * half], fresh), 4)
    result["agent_peak_rss_mb"] = round(vm_hwm_mb(), 1)
    result["nft_peak_rss_mb"] = round(runner.nft_peak_mb, 1)
    if not args.get("keep"):
        runner.delete_table()
    return result


def floor_delta(ns: str, present: list[pb.Ioc], fresh: list[pb.Ioc]) -> float:
    """`nft -f` of a hand-written delta of the same size (delete present elements, add fresh ones)."""
    from gateway_agent.nft.config import NftConfig
    from gateway_agent.nft.iocs import place_ioc

    now = now_ms()
    lines = []
    for ioc in present:
        set_name, text = place_ioc(ioc.type, ioc.value, NftConfig())  # type: ignore[misc]
        lines.append(f"delete element inet mssp {set_name} {{ {text} }}")
    for ioc in fresh:
        set_name, text = place_ioc(ioc.type, ioc.value, NftConfig())  # type: ignore[misc]
        timeout = f" timeout {timeout_seconds(ioc.expires_at_ms, now)}s" if ioc.expires_at_ms else ""
        lines.append(f"add element inet mssp {set_name} {{ {text}{timeout} }}")
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as fh:
        fh.write("\n".join(lines) + "\n")
    try:
        start = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", fh.name], check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        os.unlink(fh.name)


def floor_full(ns: str, n: int, family: int) -> dict[str, float]:
    """A plain `nft -f` of the same elements into a fresh table (file written here, then timed)."""
    from gateway_agent.nft.config import NftConfig
    from gateway_agent.nft.iocs import place_ioc

    iocs = gen_iocs(n, family, seed=1)
    now = now_ms()
    by_set: dict[str, list[str]] = {}
    for ioc in iocs:
        set_name, text = place_ioc(ioc.type, ioc.value, NftConfig())  # type: ignore[misc]
        timeout = f" timeout {timeout_seconds(ioc.expires_at_ms, now)}s" if ioc.expires_at_ms else ""
        by_set.setdefault(set_name, []).append(text + timeout)
    addr = "ipv4_addr" if family == 4 else "ipv6_addr"
    lines = ["add table inet floor"]
    for name, elems in sorted(by_set.items()):
        lines.append(f"add set inet floor {name} {{ type {addr}; flags timeout; }}")
        lines.append(f"add element inet floor {name} {{ {', '.join(elems)} }}")
    del iocs, by_set
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as fh:
        fh.write("\n".join(lines) + "\n")
    del lines
    try:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "floor"],
                       capture_output=True, check=False)
        time.sleep(3)  # the same settling time the agent's runs get
        result, elapsed, peak = run_measured(["ip", "netns", "exec", ns, "nft", "-f", fh.name])
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace"))
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "floor"], check=True)
        return {"floor_nft_f_s": round(elapsed, 3), "floor_nft_peak_rss_mb": round(peak, 1)}
    finally:
        os.unlink(fh.name)


# ---- parent ------------------------------------------------------------------------------------


def run_child(args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scenario {args} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_floor(ns: str, n: int, family: int) -> dict[str, float]:
    spec = json.dumps({"netns": ns, "n": n, "family": family})
    proc = subprocess.run([sys.executable, __file__, "--floor", spec], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"floor {n} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--v6", type=int, default=100_000)
    parser.add_argument("--delta", type=int, default=1_000)
    parser.add_argument("--skip-json-1m", action="store_true", help="skip the forced-JSON 1M comparison")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(json.loads(opts.child))))
        return 0
    if opts.floor:
        a = json.loads(opts.floor)
        print(json.dumps(floor_full(a["netns"], a["n"], a["family"])))
        return 0
    if os.geteuid() != 0:
        print(json.dumps({"error": "run as root (network namespace, nftables)"}))
        return 1

    ns = f"mssp-b-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    results: dict[str, Any] = {}
    try:
        version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
        for n in opts.sizes:
            label = f"full_v4_{n // 1000}k"
            r = run_child({"netns": ns, "n": n, "family": 4, "reapply": n == max(opts.sizes), "settle": 3})
            r.update(run_floor(ns, n, 4))
            r["ratio_to_floor"] = round(r["apply_s"] / r["floor_nft_f_s"], 2)
            r["nft_ratio_to_floor"] = round(r["nft_s"] / r["floor_nft_f_s"], 2)
            results[label] = r
        if opts.v6:
            r = run_child({"netns": ns, "n": opts.v6, "family": 6, "settle": 3})
            r.update(run_floor(ns, opts.v6, 6))
            r["ratio_to_floor"] = round(r["apply_s"] / r["floor_nft_f_s"], 2)
            r["nft_ratio_to_floor"] = round(r["nft_s"] / r["floor_nft_f_s"], 2)
            results[f"full_v6_{opts.v6 // 1000}k"] = r
        big = max(opts.sizes)
        if opts.delta:
            results[f"delta_{opts.delta // 1000}k_on_{big // 1000}k"] = run_child(
                {"netns": ns, "n": big, "family": 4, "delta": opts.delta, "settle": 3})
        if not opts.skip_json_1m:
            r = run_child({"netns": ns, "n": big, "family": 4, "json": True, "settle": 3})
            results[f"full_v4_{big // 1000}k_forced_json"] = r
        summary = {
            "full_100k_s<=2": results.get("full_v4_100k", {}).get("apply_s", 1e9) <= 2,
            "full_1M_s<=10": results.get("full_v4_1000k", {}).get("apply_s", 1e9) <= 10,
            "delta_1k_s<=0.1": next((v["delta"]["apply_s"] for k, v in results.items()
                                     if k.startswith("delta")), 1e9) <= 0.1,
            "within_1.3x_floor": {k: v["ratio_to_floor"] <= 1.3 for k, v in results.items()
                                  if "ratio_to_floor" in v},
        }
        print(json.dumps({"nft": version, "kernel": os.uname().release, "cpus": os.cpu_count(),
                          "netns": ns, "scenarios": results, "targets_met": summary}, indent=1))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
