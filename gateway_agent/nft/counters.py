"""Telemetry counters from the agent's table, read cheaply.

Named counters (``rule_<i>``, ``default``, ``never_block``, ``ioc_*``, ``cat_*``) are dumped
straight from the kernel over nfnetlink (NFT_MSG_GETOBJ, filtered to our table): nft 1.0.6 fetches
every element of every set before ``list counters`` (about 30 s of kernel time next to a
1M-element IOC set), so the CLI is no option there. The small per-host dynamic sets (bytes per
host, new flows per host, bytes per category per host, IOC hits per host) are read with
``nft -j list set``, the one list command nft filters; the IOC sets are never listed.

A full apply recreates the table and zeroes every counter. The backend reads the totals just
before and, once the new table is in, rebases on them (`Monotonic`): the source adds them to what
the new table counts, so reported values stay monotonic and nothing counted before is lost.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway_agent.counters import CounterSample
from gateway_agent.nft import TABLE
from gateway_agent.nft.names import (
    CATEGORY_HOST_SET,
    HOST_EGRESS_SET,
    HOST_FLOWS_SET,
    HOST_SETS,
    IOC_HITS_SET,
    IOC_SET_NAMES,
    VERDICT_DEFAULT,
    VERDICT_NEVER_BLOCK,
    category_host_set,
    ioc_hits_set,
    parse_counter_set,
    rule_counter_index,
)
from gateway_agent.nft.runner import NftError, NftRunner
from gateway_agent.nft.validate import parse_address
from mssp.common.metrics import CATEGORY_BYTES, HOST_EGRESS, HOST_FLOWS, IOC_HITS, IOC_SET_HITS, RULE_HITS

Key = tuple[str, str]  # (metric, dimension)
Value = tuple[int, int]  # (packets, bytes)

# nfnetlink constants (linux/netfilter/nfnetlink.h, nf_tables.h)
_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_GETOBJ = 19
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NFPROTO_INET = 1
_NFTA_OBJ_TABLE = 1
_NFTA_OBJ_NAME = 2
_NFTA_OBJ_TYPE = 3
_NFTA_OBJ_DATA = 4
_NFT_OBJECT_COUNTER = 1
_NFTA_COUNTER_BYTES = 1
_NFTA_COUNTER_PACKETS = 2
_CLONE_NEWNET = 0x40000000


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def _netlink_socket(netns: str | None) -> socket.socket:
    """A netfilter netlink socket, opened inside `netns` when given.

    A network namespace is per thread: a short-lived thread enters it and opens the socket,
    which stays bound to that namespace; the calling thread never moves.
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER))
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    thread = threading.Thread(target=enter, name="netns-socket")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def read_named_counters(netns: str | None = None, table: str = TABLE) -> dict[str, Value]:
    """name -> (packets, bytes) of every named counter in ``inet <table>``, one netlink dump."""
    with _netlink_socket(netns) as sock:
        sock.bind((0, 0))
        seq = 1
        payload = struct.pack("=BBH", _NFPROTO_INET, 0, 0)
        payload += _attr(_NFTA_OBJ_TABLE, table.encode() + b"\0")
        payload += _attr(_NFTA_OBJ_TYPE, struct.pack(">I", _NFT_OBJECT_COUNTER))
        msg_type = (_NFNL_SUBSYS_NFTABLES << 8) | _NFT_MSG_GETOBJ
        sock.send(struct.pack("=IHHII", 16 + len(payload), msg_type, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
                  + payload)
        out: dict[str, Value] = {}
        while True:
            data = sock.recv(1 << 20)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, pos)
                if length < 16:
                    return out
                body = data[pos + 16:pos + length]
                pos += (length + 3) & ~3
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", body)[0]
                    if errno == 0:
                        continue
                    if errno == 2:  # ENOENT: no such table (yet)
                        return out
                    raise NftError(f"netlink counter dump failed: {os.strerror(errno)}")
                attrs = _attrs(body[4:])
                if attrs.get(_NFTA_OBJ_TABLE, b"").rstrip(b"\0").decode(errors="replace") != table:
                    continue
                name = attrs.get(_NFTA_OBJ_NAME, b"").rstrip(b"\0").decode(errors="replace")
                data_attrs = _attrs(attrs.get(_NFTA_OBJ_DATA, b""))
                packets = int.from_bytes(data_attrs.get(_NFTA_COUNTER_PACKETS, b"\0"), "big")
                nbytes = int.from_bytes(data_attrs.get(_NFTA_COUNTER_BYTES, b"\0"), "big")
                out[name] = (packets, nbytes)
            if not data:
                return out


class Monotonic:
    """Keeps reported counters monotonic across resets of the kernel's counters.

    `rebase(totals)` is called with the last totals just before the table is recreated; after
    that a key reports base + what the kernel counts. A key the new table has not counted yet
    keeps reporting its base. Once the kernel has the key again and then drops it (an idle host
    entry times out), the base goes too: the key then restarts from zero like any kernel counter.
    """

    def __init__(self) -> None:
        self.base: dict[Key, Value] = {}
        self.seen: set[Key] = set()

    def rebase(self, totals: Mapping[Key, Value]) -> None:
        self.base = dict(totals)
        self.seen = set()

    def adjust(self, raw: Mapping[Key, Value]) -> dict[Key, Value]:
        out: dict[Key, Value] = {}
        for key, (packets, nbytes) in raw.items():
            self.seen.add(key)
            bp, bb = self.base.get(key, (0, 0))
            out[key] = (bp + packets, bb + nbytes)
        for key in list(self.base):
            if key in raw:
                continue
            if key in self.seen:
                del self.base[key]
                self.seen.discard(key)
            else:
                out[key] = self.base[key]
        return out


def _elem_counter(elem: Any) -> tuple[Any, Value] | None:
    if not isinstance(elem, dict) or not isinstance(elem.get("elem"), dict):
        return None
    body = elem["elem"]
    counter = body.get("counter")
    if not isinstance(counter, dict):
        return None
    return body.get("val"), (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))


def _hit_pair(val: Any, version: int) -> tuple[str, str] | None:
    """(LAN host, destination) of an ioc_hits element ({"concat": [saddr, daddr]})."""
    parts = val.get("concat") if isinstance(val, dict) else None
    if not isinstance(parts, list) or len(parts) != 2:
        return None
    host, dest = (parse_address(p, version) for p in parts)
    return (host, dest) if host and dest else None


class NftCounterSource:
    """CounterSource over the agent's table (see module docstring)."""

    def __init__(self, runner: NftRunner, *, lock: threading.RLock | None = None,
                 read_counters_fn: Callable[[str | None], dict[str, Value]] | None = None) -> None:
        self.runner = runner
        self.lock = lock or threading.RLock()
        self._read_named = read_counters_fn or (lambda netns: read_named_counters(netns))
        self.rule_names: dict[str, str] = {}
        self.categories: list[str] = []
        self.ioc_lookup: Callable[[str], str] = lambda addr: addr
        self.monotonic = Monotonic()

    def configure(self, *, rule_names: Mapping[str, str], categories: Iterable[str],
                  ioc_lookup: Callable[[str], str] | None = None) -> None:
        """What the applied table holds: rule counter -> rule name, the category sets."""
        with self.lock:
            self.rule_names = dict(rule_names)
            self.categories = list(categories)
            if ioc_lookup is not None:
                self.ioc_lookup = ioc_lookup

    def set_names(self) -> list[str]:
        """The dynamic counter sets read for telemetry (small, bounded by LAN hosts)."""
        return [*HOST_SETS, *(category_host_set(c, v) for c in self.categories for v in (4, 6))]

    def _raw(self, sets: Mapping[str, dict[str, Any]] | None = None) -> dict[Key, Value]:
        raw: dict[Key, Value] = {}

        def add(key: Key, value: Value) -> None:
            p, b = raw.get(key, (0, 0))
            raw[key] = (p + value[0], b + value[1])

        for name, value in self._read_named(self.runner.netns).items():
            if rule_counter_index(name) is not None:
                add((RULE_HITS, self.rule_names.get(name, name)), value)
            elif name in (VERDICT_DEFAULT, VERDICT_NEVER_BLOCK):
                add((RULE_HITS, f"@{name}"), value)  # '@' cannot start a policy rule name
            elif name in IOC_SET_NAMES:
                add((IOC_SET_HITS, name), value)
        if sets is None:
            sets = self.runner.list_sets(self.set_names())
        for name, body in sets.items():
            kind_of_set = parse_counter_set(name)
            if kind_of_set is None:
                continue
            kind, category, version = kind_of_set
            for elem in body.get("elem", []):
                parsed = _elem_counter(elem)
                if parsed is None:
                    continue
                val, value = parsed
                if kind == IOC_HITS_SET:
                    pair = _hit_pair(val, version)
                    if pair is not None:
                        add((IOC_HITS, f"{self.ioc_lookup(pair[1])}|{pair[0]}"), value)
                    continue
                host = parse_address(val, version)
                if host is None:
                    continue
                if kind == HOST_EGRESS_SET:
                    add((HOST_EGRESS, host), value)
                elif kind == HOST_FLOWS_SET:
                    add((HOST_FLOWS, host), value)
                elif kind == CATEGORY_HOST_SET:
                    add((CATEGORY_BYTES, f"{category}|{host}"), value)
        return raw

    def ioc_hits(self) -> dict[tuple[str, str], int]:
        """(indicator, LAN host) -> packets, from the two small ioc_hits sets alone: cheap enough to
        poll twice a second (a set holds at most host_set_size pairs)."""
        with self.lock:
            sets = self.runner.list_sets([ioc_hits_set(4), ioc_hits_set(6)])
            lookup = self.ioc_lookup
        hits: dict[tuple[str, str], int] = {}
        for name, body in sets.items():
            version = 4 if name == ioc_hits_set(4) else 6
            for elem in body.get("elem", []):
                parsed = _elem_counter(elem)
                pair = _hit_pair(parsed[0], version) if parsed is not None else None
                if parsed is not None and pair is not None:
                    key = (lookup(pair[1]), pair[0])
                    hits[key] = hits.get(key, 0) + parsed[1][0]
        return hits

    def read_counters(self) -> list[CounterSample]:
        with self.lock:
            totals = self.monotonic.adjust(self._raw())
        return [CounterSample(metric, dim, p, b) for (metric, dim), (p, b) in sorted(totals.items())]

    def totals(self, sets: Mapping[str, dict[str, Any]] | None = None) -> dict[Key, Value]:
        """What read_counters would report now (`sets`: already listed); a full apply rebases on it."""
        with self.lock:
            return self.monotonic.adjust(self._raw(sets))
