"""conntrack's event stream (`conntrack -E -o timestamp,id`), parsed into what the detector needs.

A line looks like
  [1701234567.123456]	    [NEW] tcp      6 120 SYN_SENT src=192.0.2.10 dst=203.0.113.50 sport=40000
  dport=443 [UNREPLIED] src=203.0.113.50 dst=192.0.2.10 sport=443 dport=40000 id=3841723904
The first src/dst/dport are the original direction (the LAN host's); [UNREPLIED] means the far end
has not answered yet; bytes= appear with accounting on (net.netfilter.nf_conntrack_acct=1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway_agent.beacons.detector import BeaconDetector

log = logging.getLogger("mssp.agent")

_LINE = re.compile(r"^\[(?P<ts>\d+\.\d+)\]\s+\[(?P<kind>NEW|UPDATE|DESTROY)\]\s+(?P<rest>.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class FlowEvent:
    kind: str  # new | update | destroy
    at: float
    conn_id: int
    host: str
    destination: str
    port: int
    replied: bool
    sent_bytes: int


def parse_event(line: str) -> FlowEvent | None:
    m = _LINE.match(line.strip())
    if m is None:
        return None
    rest = m.group("rest")
    original = rest.split(" src=", 2)
    if len(original) < 2:
        return None
    first = dict(_FIELD.findall("src=" + original[1]))
    everything = dict(_FIELD.findall(rest))  # the last id= wins; it is the flow's
    try:
        return FlowEvent(m.group("kind").lower(), float(m.group("ts")), int(everything["id"]),
                         str(ipaddress.ip_address(first["src"])), str(ipaddress.ip_address(first["dst"])),
                         int(first.get("dport", "0")), "[UNREPLIED]" not in rest,
                         int(first.get("bytes", "0")))
    except (KeyError, ValueError):
        return None


def feed(detector: BeaconDetector, event: FlowEvent, skip: Callable[[str], bool]) -> None:
    if skip(event.destination):
        return
    if event.kind == "new":
        detector.new(event.conn_id, event.host, event.destination, event.port, event.at)
    elif event.kind == "update" and event.replied:
        detector.replied(event.conn_id)
    elif event.kind == "destroy":
        detector.destroy(event.conn_id, replied=event.replied, sent_bytes=event.sent_bytes)


def never_flagged(networks: Iterable[str]) -> Callable[[str], bool]:
    """True for an address in `networks` (the router's never-block list: its controller, its broker)."""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]

    def skip(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return ip.is_loopback or any(ip.version == n.version and ip in n for n in nets)

    return skip


async def follow(argv: Sequence[str], detector: BeaconDetector, skip: Callable[[str], bool]) -> None:
    """Read the event stream until cancelled; a conntrack that dies is restarted after a pause."""
    while True:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.warning("beacon detection off: cannot run conntrack (%s)", exc)
            return
        try:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                event = parse_event(line.decode(errors="replace"))
                if event is not None:
                    feed(detector, event, skip)
        finally:
            if proc.returncode is None:
                proc.kill()
            code = await proc.wait()
        log.warning("conntrack events stopped (exit %s); restarting in 5 s", code)
        await asyncio.sleep(5.0)
