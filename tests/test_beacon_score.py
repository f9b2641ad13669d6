"""Beacon scoring on synthetic connection streams: a 2 s beacon with 5% jitter is flagged within a
bounded number of intervals; browsing, update checks, NTP and a heartbeat many hosts share are not
(a longer run counts false positives: none); failed retries never count."""

from __future__ import annotations

import random

from gateway_agent.beacons.detector import BeaconDetector
from gateway_agent.beacons.score import MIN_INTERVALS, score

C2 = "203.0.113.50"


class Lan:
    """Feeds a detector the NEW/reply/DESTROY events a LAN would cause."""

    def __init__(self, detector: BeaconDetector) -> None:
        self.detector = detector
        self.next_id = 1

    def connect(self, host: str, dst: str, port: int, at: float, nbytes: int = 300, *,
                answered: bool = True) -> None:
        cid, self.next_id = self.next_id, self.next_id + 1
        self.detector.new(cid, host, dst, port, at)
        if answered:
            self.detector.replied(cid)
        self.detector.destroy(cid, replied=answered, sent_bytes=nbytes)


def traffic(lan: Lan, seconds: float, rng: random.Random) -> None:
    t = 0.0
    events: list[tuple[float, str, str, int, int]] = []
    while t < seconds:  # the beacon: every 2 s, 5% jitter, about 300 bytes
        events.append((t, "192.0.2.10", C2, 443, 300 + rng.randint(-10, 10)))
        t += 2.0 * rng.uniform(0.95, 1.05)
    for host in ("192.0.2.20", "192.0.2.21", "192.0.2.22"):  # an app heartbeat to a shared CDN address
        t = rng.uniform(0, 5)
        while t < seconds:
            events.append((t, host, "198.51.100.200", 443, 150))
            t += 5.0
    t = 0.0
    while t < seconds:  # NTP-like queries to one server
        events.append((t, "192.0.2.30", "203.0.113.123", 123, 48))
        t += 16.0
    t = 0.0
    while t < seconds:  # update checks: "about every minute"
        events.append((t, "192.0.2.31", "198.51.100.201", 443, rng.randint(800, 4000)))
        t += 60.0 * rng.uniform(0.7, 1.3)
    t = 0.0
    while t < seconds:  # browsing: bursts to several sites, human pauses
        for _ in range(rng.randint(1, 6)):
            events.append((t + rng.uniform(0, 2), "192.0.2.40", f"198.51.100.{rng.randint(1, 9)}", 443,
                           rng.randint(500, 90_000)))
        t += rng.expovariate(1 / 20)
    for at, host, dst, port, nbytes in sorted(events):
        lan.connect(host, dst, port, at, nbytes)


def test_the_beacon_is_flagged_and_nothing_else_is() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        detector = BeaconDetector(started=0.0)
        lan = Lan(detector)
        traffic(lan, 30.0, rng)  # 15 beats
        found = [(s.host, s.destination, s.port) for s in detector.suspects(now=30.0)]
        assert found == [("192.0.2.10", C2, 443)], (seed, found)
        (suspect,) = detector.suspects(now=30.0)
        assert 1.9 < suspect.score.median_interval_s < 2.1 and suspect.score.jitter_s < 0.1
        assert 290 <= suspect.score.median_bytes <= 310


def test_flagged_within_a_bounded_number_of_intervals() -> None:
    worst = 0
    for seed in range(50):
        rng = random.Random(seed)
        detector = BeaconDetector(started=0.0)
        lan = Lan(detector)
        t, beats = 0.0, 0
        while not detector.suspects(now=t):
            lan.connect("192.0.2.10", C2, 443, t, 300 + rng.randint(-10, 10))
            beats += 1
            t += 2.0 * rng.uniform(0.95, 1.05)
            assert beats < 30, seed
        worst = max(worst, beats - 1)
    assert MIN_INTERVALS <= worst <= 12


def test_no_false_positives_over_a_longer_run() -> None:
    rng = random.Random(7)
    detector = BeaconDetector(started=0.0)
    lan = Lan(detector)
    traffic(lan, 1800.0, rng)  # half an hour
    assert [s.destination for s in detector.suspects(now=1800.0)] == [C2]


def test_failed_retries_are_no_beats() -> None:
    detector = BeaconDetector(started=0.0)
    lan = Lan(detector)
    for i in range(30):  # a dead server retried every second: never answered
        lan.connect("192.0.2.10", "203.0.113.60", 443, float(i), answered=False)
    assert detector.suspects(now=30.0) == [] and detector.pairs == {}


def test_too_few_or_irregular_connections_do_not_score() -> None:
    assert score([0.0, 2.0, 4.0]) is None
    assert score([0, 1, 30, 31, 90, 200, 201, 400]) is not None
    irregular = score([0, 1, 30, 31, 90, 200, 201, 400])
    assert irregular is not None and irregular.score < 60
