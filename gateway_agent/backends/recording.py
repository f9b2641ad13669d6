"""A backend that enforces nothing and writes the compiled desired state to a file.

Used for simulation (demo, benchmarks, tests without root): the file shows exactly what a
kernel backend would have been asked to enforce. It counts nothing and runs no DNS server, so it
keeps the interface's defaults: no counters, no query log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from google.protobuf import json_format

from gateway_agent.backends.base import EnforcementBackend
from gateway_agent.state import DesiredState, StateChange
from mssp.v1 import common_pb2


def compile_state(state: DesiredState) -> dict[str, object]:
    versions = state.versions()
    iocs = sorted(state.live_iocs(), key=lambda i: (i.type, i.value))
    return {
        "versions": _versions(versions),
        "policy": json_format.MessageToDict(state.policy, preserving_proto_field_name=True),
        "iocs": [
            {"type": common_pb2.IocType.Name(i.type), "value": i.value, "expires_at_ms": i.expires_at_ms}
            for i in iocs
        ],
    }


class RecordingBackend(EnforcementBackend):
    name = "recording"
    hits_block = False  # a dict copy: a thread hop per poll would cost a fleet simulation more

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "desired.json"
        self.applies = 0
        self.deltas = 0
        self.hits: dict[tuple[str, str], int] = {}  # what a simulation says the kernel dropped

    def record_hit(self, indicator: str, host: str, packets: int = 1) -> None:
        """A simulated kernel hit: `host` reached for `indicator` (a simulation's or a bench's)."""
        self.hits[(indicator, host)] = self.hits.get((indicator, host), 0) + packets

    def ioc_hits(self) -> dict[tuple[str, str], int]:
        return dict(self.hits)

    def _write(self, state: DesiredState) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(compile_state(state), indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def apply_full(self, state: DesiredState) -> None:
        self._write(state)
        self.applies += 1

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        self._write(state)
        self.deltas += 1

    def verify(self, state: DesiredState) -> bool:
        try:
            recorded = json.loads(self.path.read_text())["versions"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(recorded == _versions(state.versions()))


def _versions(v: common_pb2.Versions) -> dict[str, int]:
    return {"global_seq": v.global_seq, "tenant_seq": v.tenant_seq, "alliance_seq": v.alliance_seq}


def read_recorded(directory: Path) -> dict[str, object]:
    return json.loads((directory / "desired.json").read_text())
