"""What an enforcement backend can tell telemetry: cumulative counters, read cheaply.

The nft backend reads them from its table; telemetry turns successive reads into deltas
(a counter that went down was reset, e.g. by a full apply, and counts from zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CounterSample:
    metric: str
    dimension: str
    packets: int
    bytes: int


@runtime_checkable
class CounterSource(Protocol):
    def read_counters(self) -> list[CounterSample]: ...
