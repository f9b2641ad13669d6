"""Channel names and NATS subjects, as both the controller and the agent spell them.

Subjects (one NATS account; the broker enforces per-gateway permissions):
  mssp.push.global                      global IOC channel
  mssp.push.tenant.<tenant_id>          tenant channel: policy bundles and tenant IOCs
  mssp.push.alliance                    alliance IOC channel: only gateways of sharing tenants
  mssp.telemetry.<tenant_id>.<gateway_id>.>   what a gateway may publish
"""

from __future__ import annotations

GLOBAL_CHANNEL = "global"
ALLIANCE_CHANNEL = "alliance"
PUSH_PREFIX = "mssp.push"
TELEMETRY_PREFIX = "mssp.telemetry"


def tenant_channel(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def channel_subject(channel: str) -> str:
    if channel in (GLOBAL_CHANNEL, ALLIANCE_CHANNEL):
        return f"{PUSH_PREFIX}.{channel}"
    kind, _, ident = channel.partition(":")
    if kind != "tenant" or not ident:
        raise ValueError(f"unknown channel {channel!r}")
    return f"{PUSH_PREFIX}.tenant.{ident}"


def telemetry_subject_prefix(tenant_id: str, gateway_id: str) -> str:
    return f"{TELEMETRY_PREFIX}.{tenant_id}.{gateway_id}"
