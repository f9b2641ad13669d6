"""How periodic one (LAN host, destination, port) pair is: the RITA way, pure arithmetic.

A command-and-control beacon connects on a timer (often with jitter) and sends about the same bytes
each time. Browsing, updates and human use do not. The score (0-100) averages:
  - interval skew: Bowley's (Q1 + Q3 - 2 Q2) / (Q3 - Q1) of the gaps between connections; a timer
    is symmetric around its median (score 1 - |skew|);
  - interval dispersion: the median absolute deviation of the gaps relative to their median, where
    DISPERSION_ZERO (20%) or more scores 0: 5% jitter keeps it near 0.9, a "roughly every minute"
    update check (30%) and browsing score 0;
  - size regularity: the same two measures over bytes per connection, when they are known;
  - persistence: how many gaps there are (MIN_INTERVALS at least to score at all, full marks from
    FULL_INTERVALS) and how much of the observed time they cover.
Weights (WEIGHTS): dispersion is the sharpest measure and counts most; skew is noisy under uniform
jitter (a 15-beat sample of a +-5% timer has a Bowley skew anywhere in -0.6..0.6) and counts least.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_INTERVALS = 5
FULL_INTERVALS = 10
DISPERSION_ZERO = 0.2
# interval skew, interval dispersion, size skew, size dispersion, persistence
WEIGHTS = (1.0, 3.0, 0.5, 1.0, 1.0)


@dataclass(frozen=True)
class Score:
    score: int  # 0-100
    intervals: int
    median_interval_s: float
    jitter_s: float  # median absolute deviation of the intervals
    median_bytes: int


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _regularity(values: Sequence[float]) -> tuple[float, float]:
    """(skew score, dispersion score) in 0..1 of a series (1, 1: perfectly regular)."""
    q1, q2, q3 = _quartiles(values)
    skew = 0.0 if q3 == q1 else (q1 + q3 - 2 * q2) / (q3 - q1)
    mad = statistics.median(abs(v - q2) for v in values)
    dispersion = max(0.0, 1.0 - mad / (q2 * DISPERSION_ZERO)) if q2 > 0 else 0.0
    return 1.0 - min(1.0, abs(skew)), dispersion


def score(timestamps: Sequence[float], sizes: Sequence[int] = (),
          observed_s: float | None = None) -> Score | None:
    """None when there are too few connections to judge. `observed_s`: how long the detector has
    watched (coverage is the pair's span over it; by default the span itself, i.e. full)."""
    ts = sorted(timestamps)
    gaps = [b - a for a, b in itertools.pairwise(ts) if b > a]
    if len(gaps) < MIN_INTERVALS:
        return None
    skew_s, disp_s = _regularity(gaps)
    span = ts[-1] - ts[0]
    coverage = 1.0 if not observed_s else min(1.0, span / observed_s)
    persistence = min(1.0, len(gaps) / FULL_INTERVALS) * (0.5 + 0.5 * coverage)
    w_skew, w_disp, w_size_skew, w_size_disp, w_persist = WEIGHTS
    parts = [(skew_s, w_skew), (disp_s, w_disp), (persistence, w_persist)]
    known = [s for s in sizes if s > 0]
    if len(known) > MIN_INTERVALS:
        size_skew, size_disp = _regularity([float(s) for s in known])
        parts += [(size_skew, w_size_skew), (size_disp, w_size_disp)]
    median_gap = statistics.median(gaps)
    jitter = statistics.median(abs(g - median_gap) for g in gaps)
    total = sum(value * weight for value, weight in parts) / sum(weight for _, weight in parts)
    return Score(round(100 * total), len(gaps), median_gap, jitter,
                 int(statistics.median(known)) if known else 0)
