"""The agent's desired state and the rules for moving it forward (pure: no I/O, no transport).

A gateway follows "global" and "tenant:<id>", and "alliance" while its tenant shares (the
controller says so, gateway_agent/following.py). Each push names its channel and
seq: seq N applies only on top of N-1 (a larger one is a gap -> resync), an older or equal one is
a replay and is refused (rollback protection). Snapshots replace a channel whole and may come in
several parts that take effect together. Any push too large for one broker message may come as
`part`s of one seq (mssp.common.parts); it is applied once, when its last part is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway_agent.clock import enforcement_ms
from gateway_agent.errors import AgentError
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL
from mssp.common.parts import PartAssembler, PartError
from mssp.v1 import common_pb2, push_pb2

IocKey = tuple[int, str]


class Gap(AgentError):
    """The push is ahead of what we applied: something was missed, resync from the controller."""


class Stale(AgentError):
    """The push is not newer than what we applied: a replay or a late duplicate."""


class Invalid(AgentError):
    """The push is signed but makes no sense for this channel (e.g. a policy on the global channel)."""


def ioc_key(ioc: common_pb2.Ioc) -> IocKey:
    return (ioc.type, ioc.value)


@dataclass
class ChannelState:
    seq: int = 0
    iocs: dict[IocKey, common_pb2.Ioc] = field(default_factory=dict)


@dataclass
class StateChange:
    """What one push changed; a backend applies it as a delta unless `full` is set."""

    channel: str
    seq: int
    full: bool = False
    added: list[common_pb2.Ioc] = field(default_factory=list)
    removed: list[common_pb2.Ioc] = field(default_factory=list)
    # The whole push applied when it came in parts (what the journal must record), else None.
    push: push_pb2.Push | None = None

    @property
    def empty(self) -> bool:
        return not (self.full or self.added or self.removed)


@dataclass
class DesiredState:
    tenant_channel: str
    channels: dict[str, ChannelState] = field(default_factory=dict)
    policy: common_pb2.PolicyBundle = field(default_factory=common_pb2.PolicyBundle)
    _pending: dict[str, list[push_pb2.Push]] = field(default_factory=dict, repr=False)
    _parts: PartAssembler = field(default_factory=PartAssembler, repr=False)

    def __post_init__(self) -> None:
        for name in (GLOBAL_CHANNEL, self.tenant_channel):
            self.channels.setdefault(name, ChannelState())

    @property
    def channel_names(self) -> set[str]:
        return set(self.channels)

    @property
    def follows_alliance(self) -> bool:
        return ALLIANCE_CHANNEL in self.channels

    def follow(self, name: str) -> None:
        """Start following an optional channel (from seq 0: its first push is a gap, so a resync)."""
        if name != ALLIANCE_CHANNEL:
            raise Invalid(f"{name!r} is not a channel a gateway can join")
        self.channels.setdefault(name, ChannelState())

    def unfollow(self, name: str) -> StateChange | None:
        """Stop following an optional channel; what it carried is no longer enforced (a full apply)."""
        if name != ALLIANCE_CHANNEL or name not in self.channels:
            return None
        del self.channels[name]
        self._pending.pop(name, None)
        return StateChange(name, 0, full=True)

    def versions(self) -> common_pb2.Versions:
        alliance = self.channels.get(ALLIANCE_CHANNEL)
        return common_pb2.Versions(
            global_seq=self.channels[GLOBAL_CHANNEL].seq,
            tenant_seq=self.channels[self.tenant_channel].seq,
            alliance_seq=alliance.seq if alliance is not None else 0,
        )

    def versions_text(self) -> str:
        v = self.versions()
        return f"t{v.tenant_seq}/g{v.global_seq}" + (f"/a{v.alliance_seq}" if self.follows_alliance else "")

    def live_iocs(self, at_ms: int | None = None) -> list[common_pb2.Ioc]:
        """Every indicator in force, expired ones left out (the kernel backend also uses timeouts)."""
        at = enforcement_ms() if at_ms is None else at_ms
        return [
            ioc
            for ch in self.channels.values()
            for ioc in ch.iocs.values()
            if not ioc.expires_at_ms or ioc.expires_at_ms > at
        ]

    def beaconed_channels(self) -> set[str]:
        """Channels the controller beacons to us: those past seq 0 (it beacons heads above 0, and
        a channel we hold at n > 0 has a head of at least n)."""
        return {name for name, ch in self.channels.items() if ch.seq > 0}

    def ioc_count(self) -> int:
        return sum(len(ch.iocs) for ch in self.channels.values())

    def apply(self, push: push_pb2.Push) -> StateChange | None:
        """Move the state forward by one push; None when nothing is to be enforced yet."""
        channel = self.channels.get(push.channel)
        if channel is None:
            raise Invalid(f"unknown channel {push.channel!r}")
        kind = push.WhichOneof("body")
        if kind == "beacon":
            if push.seq > channel.seq:
                raise Gap(f"{push.channel} is at {push.seq}, applied {channel.seq}")
            return None
        if kind == "snapshot":
            return self._apply_snapshot_part(push, channel)
        if kind == "part":
            return self._apply_part(push, channel)
        if push.seq <= channel.seq:
            raise Stale(f"{push.channel}#{push.seq} is not newer than applied #{channel.seq}")
        if push.seq != channel.seq + 1:
            raise Gap(f"{push.channel}#{push.seq} follows #{channel.seq}: missing updates")
        if kind == "policy":
            if push.channel != self.tenant_channel:
                raise Invalid("policy bundles only travel on the tenant channel")
            self.policy = push.policy
            channel.seq = push.seq
            return StateChange(push.channel, push.seq, full=True)
        if kind == "iocs":
            change = StateChange(push.channel, push.seq)
            for ioc in push.iocs.remove:
                old = channel.iocs.pop(ioc_key(ioc), None)
                if old is not None:
                    change.removed.append(old)
            for ioc in push.iocs.upsert:
                key = ioc_key(ioc)
                old = channel.iocs.get(key)
                if old is not None:
                    change.removed.append(old)
                channel.iocs[key] = ioc
                change.added.append(ioc)
            channel.seq = push.seq
            return change
        raise Invalid(f"push {push.channel}#{push.seq} has no body")

    def _apply_part(self, push: push_pb2.Push, channel: ChannelState) -> StateChange | None:
        """Buffer one part; apply the whole push when it completes. Parts at or below the applied seq
        are still collected (a snapshot may restate the applied seq); the whole push decides."""
        if push.seq < channel.seq:
            raise Stale(f"part of {push.channel}#{push.seq} is older than applied #{channel.seq}")
        try:
            whole = self._parts.add(push)
        except PartError as exc:
            if push.seq <= channel.seq:  # the rest of a push we already have by another way
                raise Stale(str(exc)) from exc
            raise Gap(str(exc)) from exc
        if whole is None:
            return None
        change = self.apply(whole)
        if change is not None:
            change.push = whole
        return change

    def _apply_snapshot_part(self, push: push_pb2.Push, channel: ChannelState) -> StateChange | None:
        if push.seq < channel.seq:
            raise Stale(f"snapshot {push.channel}#{push.seq} is older than applied #{channel.seq}")
        parts = self._pending.setdefault(push.channel, [])
        part = push.snapshot
        if part.index != len(parts) or (parts and parts[0].seq != push.seq):
            self._pending.pop(push.channel, None)
            raise Gap(f"snapshot {push.channel}#{push.seq} part {part.index} out of order")
        parts.append(push)
        if not part.last:
            return None
        del self._pending[push.channel]
        iocs: dict[IocKey, common_pb2.Ioc] = {}
        for p in parts:
            for ioc in p.snapshot.iocs:
                iocs[ioc_key(ioc)] = ioc
        if push.channel == self.tenant_channel:
            first = parts[0].snapshot
            self.policy = first.policy if first.HasField("policy") else common_pb2.PolicyBundle()
        channel.seq = push.seq
        channel.iocs = iocs
        return StateChange(push.channel, push.seq, full=True)

    def snapshot_pushes(self) -> list[push_pb2.Push]:
        """The whole state as one snapshot push per channel (what the state file stores)."""
        pushes = []
        for name in sorted(self.channel_names):
            ch = self.channels[name]
            part = push_pb2.SnapshotPart(index=0, last=True, iocs=list(ch.iocs.values()))
            if name == self.tenant_channel:
                part.policy.CopyFrom(self.policy)
            pushes.append(push_pb2.Push(channel=name, seq=ch.seq, snapshot=part))
        return pushes
