"""Provisioning over SSH: 1, 10 and 30 namespace routers in one bulk run each (root).

Prints JSON. Each size gets a fresh controller (in its own namespace, as in the tests) and a fresh
fleet of routers with their own sshd (tests/support/routers.py); the agent bundle is built once.
For each run: wall time, the machine's CPU-seconds over the run (every process: controller, Ansible,
ssh, sshd, pip, the agents), per-host time, and how a host's time splits over the role's parts
(`common` ssh and facts, `install` copy of the bundle and pip, `configure`, `service` start and
enrollment, `wait` until the controller saw it converged). The target: hosts overlap rather than
wait on each other, wall <= 1.2 x (CPU-seconds / 2 cores) + one router's time (the 1-router run).
A second run of the same size shows what an idempotent re-run costs.

    sudo python bench/provision.py [--sizes 1,10,30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.provisioning import Site, build_bundle, by_host
from tests.support.routers import RouterFleet, missing_requirements

CORES = 2


def busy_cpu_seconds() -> float:
    """CPU time spent by every process on the machine so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def one_run(site: Site) -> dict[str, object]:
    cpu0, t0 = busy_cpu_seconds(), time.monotonic()
    code, summary = site.provision()
    wall, cpu = time.monotonic() - t0, busy_cpu_seconds() - cpu0
    hosts = by_host(summary).values()
    seconds = sorted(float(h["seconds"]) for h in hosts)
    phases: dict[str, list[float]] = {}
    for h in hosts:
        for name, value in dict(h.get("phases", {})).items():
            phases.setdefault(name, []).append(float(value))
    return {
        "exit": code, "states": sorted({str(h["state"]) for h in hosts}),
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "per_host_s": {"p50": round(statistics.median(seconds), 2), "max": round(seconds[-1], 2)},
        "phase_mean_s": {k: round(statistics.mean(v), 2) for k, v in sorted(phases.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,30")
    args = parser.parse_args()
    problem = missing_requirements()
    if problem:
        print(json.dumps({"skipped": problem}))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
        root = Path(tmp)
        bundle = build_bundle(root / "bundle")
        for n in sizes:
            here = root / f"n{n}"
            here.mkdir()
            with RouterFleet.create(here, n) as fleet, Site.start(here, fleet, bundle) as site:
                assert site.ctl("tenant", "create", "acme").returncode == 0
                first = one_run(site)
                again = one_run(site)
            results.append({"routers": n, "first": first, "rerun": again})
    one_router = next((float(r["first"]["wall_s"]) for r in results  # type: ignore[index]
                       if r["routers"] == 1), None)
    for r in results:
        first = r["first"]
        assert isinstance(first, dict)
        if one_router is not None:
            target = 1.2 * float(first["cpu_s"]) / CORES + one_router
            r["target_wall_s"] = round(target, 2)
            r["meets_target"] = float(first["wall_s"]) <= target
    print(json.dumps({"bench": "provision", "cores": CORES, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
