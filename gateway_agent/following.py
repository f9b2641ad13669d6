"""Which push channels the agent follows, and the NATS JWT that lets it: both come from GetBrokers.

A tenant that joins the alliance makes its gateways follow the alliance channel; one that leaves
makes them drop it and every indicator it carried. The controller re-issues each gateway's NATS JWT
with the matching subscribe permission and revokes the old one, so the broker cuts the connection
once; the agent asks GetBrokers (brokers.py, as whenever NATS fails), saves the new JWT in its creds
file (nats-py reads the file on every connect) and follows what the answer lists. Channel changes
run on the push worker, in order with pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nkeys
from nats import errors as nats_errors

from gateway_agent.catrust import CaFollower
from gateway_agent.identity import CREDS_LOCK
from mssp.common.channels import ALLIANCE_CHANNEL, channel_subject
from mssp.common.creds import creds_file_text, jwt_subject, parse_creds_file
from mssp.common.files import write_private
from mssp.common.keyring import KeyRing
from mssp.v1 import common_pb2, gateway_pb2

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

    from gateway_agent.runtime import GatewayAgent

log = logging.getLogger("mssp.agent")


@dataclass(frozen=True)
class Following:
    """What one GetBrokers answer says beyond the URLs (queued for the push worker)."""

    channels: frozenset[str]  # empty: a controller that predates the alliance, change nothing
    user_jwt: str
    signing_keys: common_pb2.SigningKeys | None = None  # None: a controller that predates rotation
    ca: gateway_pb2.CaTrust | None = None  # None: a controller that predates CA rollovers (catrust.py)

    @classmethod
    def of(cls, reply: gateway_pb2.Brokers) -> Following:
        keys = reply.signing_keys if reply.HasField("signing_keys") else None
        ca = reply.ca if reply.HasField("ca") else None
        return cls(frozenset(reply.channels), reply.user_jwt, keys, ca)


def save_user_jwt(creds_path: Path, user_jwt: str) -> bool:
    """Put `user_jwt` in the creds file beside our seed; False when it is already there. A JWT for
    another key is refused (ValueError): it could never connect, and our own would be lost."""
    with CREDS_LOCK:
        return _save_user_jwt(creds_path, user_jwt)


def _save_user_jwt(creds_path: Path, user_jwt: str) -> bool:
    jwt, seed = parse_creds_file(creds_path.read_text())
    if jwt == user_jwt:
        return False
    ours = nkeys.from_seed(seed).public_key.decode()
    if jwt_subject(user_jwt) != ours:
        raise ValueError("the controller's NATS JWT is for another key")
    write_private(creds_path, creds_file_text(user_jwt, seed).encode())
    return True


class ChannelFollower:
    """Subscribes to, and drops, the optional channels of one agent."""

    def __init__(self, agent: GatewayAgent) -> None:
        self.agent = agent
        self.subscriptions: dict[str, Subscription] = {}
        self.ca = CaFollower(agent)

    async def subscribe_all(self) -> None:
        """Every channel the state follows, on a new connection."""
        agent = self.agent
        assert agent._nc is not None
        for channel in sorted(agent.state.channel_names):
            self.subscriptions[channel] = await agent._nc.subscribe(channel_subject(channel),
                                                                    cb=agent._on_message)

    async def trust(self, answered: common_pb2.SigningKeys) -> None:
        """Adopt the push-signing keys GetBrokers listed (pinned mTLS: the controller's word; a
        rotation announced on NATS only makes us ask), then resync: a push the new key signed may
        have been refused before we knew the key."""
        agent = self.agent
        ring = KeyRing.of(answered)
        if ring is None or ring.keys == agent.keys.keys:
            return
        agent.keys = ring
        agent.identity.trust(ring)
        await asyncio.to_thread(agent.identity.save)
        log.info("%s: push-signing keys now %s", agent.identity.label, ", ".join(sorted(ring.keys)))
        agent.request_resync()

    async def apply(self, following: Following) -> None:
        agent = self.agent
        if following.ca is not None:
            await self.ca.apply(following.ca)
        if following.signing_keys is not None:
            await self.trust(following.signing_keys)
        if following.user_jwt:
            try:
                if await asyncio.to_thread(save_user_jwt, agent.identity.creds_path, following.user_jwt):
                    log.info("%s: new NATS credentials from the controller", agent.identity.label)
            except (OSError, ValueError) as exc:
                log.warning("%s: keeping the NATS credentials we have: %s", agent.identity.label, exc)
        if not following.channels:
            return
        wanted = ALLIANCE_CHANNEL in following.channels
        if wanted == agent.state.follows_alliance:
            return
        if wanted:
            agent.state.follow(ALLIANCE_CHANNEL)
            log.info("%s: the tenant shares: following the alliance channel", agent.identity.label)
            if not agent.recovery.holding:  # the state file must know the channel before its deltas
                await asyncio.to_thread(agent.statefile.save_full, agent.state)
            nc = agent._nc
            if ALLIANCE_CHANNEL not in self.subscriptions and nc is not None and not nc.is_closed:
                self.subscriptions[ALLIANCE_CHANNEL] = await nc.subscribe(
                    channel_subject(ALLIANCE_CHANNEL), cb=agent._on_message)
            agent.request_resync()  # its content
            return
        sub = self.subscriptions.pop(ALLIANCE_CHANNEL, None)
        if sub is not None:
            with contextlib.suppress(nats_errors.Error):  # a closed connection holds no subscription
                await sub.unsubscribe()
        change = agent.state.unfollow(ALLIANCE_CHANNEL)
        log.info("%s: the tenant left the alliance: its indicators are no longer enforced",
                 agent.identity.label)
        if change is not None and not agent.recovery.holding:  # holding: nothing reaches the kernel yet
            await agent.enforce(change)
