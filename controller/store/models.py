"""SQL tables (SQLModel). Times are epoch milliseconds; ids are uuid4 hex strings.

`push_log` is both the transactional outbox (rows committed with the change they carry,
published after the commit) and the delta log that resyncs serve from.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, LargeBinary, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


class Tenant(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(unique=True, index=True, max_length=63)
    plan: str = Field(max_length=63)
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    policy_version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    policy_yaml: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    policy_bundle: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))
    policy_updated_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # Set by `tenant delete`: hidden from every view, its name reserved until its data is purged.
    deleted_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # In the alliance (`tenant set-sharing`): its gateways follow the alliance channel.
    sharing: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False,
                                                          server_default=false()))


class Gateway(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_gateway_tenant_name"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=32)
    name: str = Field(max_length=63)
    status: str = Field(default="pending", max_length=16)  # pending, enrolled, revoked
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    enrolled_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    last_seen_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    cert_serial: str | None = Field(default=None, unique=True, max_length=64)
    nats_public_key: str = Field(default="", max_length=64)
    # When it was revoked: the broker revocation time and the cut-off for its telemetry.
    revoked_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # Set when the record is deleted or replaced by a re-enrollment: a revoked tombstone (its serial
    # and NATS key stay refused), renamed "~<id>" so the name is free, hidden from every view.
    retired_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    former_name: str = Field(  # a retired record's name, for labelling its telemetry history
        default="", sa_column=Column(String(63), nullable=False, default="", server_default="")
    )
    agent_version: str = Field(default="", max_length=64)
    backend: str = Field(default="", max_length=32)
    last_error: str = Field(default="", max_length=500)
    # What the gateway reported it does not enforce: a JSON list of [kind, value, reason] (the first
    # 50, see controller/refusals.py) and how many there were; any means not converged.
    refusals: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))
    refusals_total: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # The device budget it reported (gateway_agent/budget.py) and how many it left out for it.
    ioc_budget: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    left_out_by_budget: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    applied_global_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    applied_tenant_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    applied_alliance_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # Its agent follows GetBrokers' channels and re-issued JWTs (enrollment or a status report said so).
    alliance_aware: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False,
                                                                 server_default=false()))
    # When its NATS user JWT was last re-issued (unix seconds; 0: the one enrollment gave is current).
    # JWTs issued before it are revoked at the broker, so a gateway whose permissions shrank
    # (its tenant left the alliance) cannot keep the wider ones.
    nats_jwt_issued_s: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # Its client certificate's validity (0 on rows enrolled before renewal: enrolled_at + 397 days).
    cert_not_before_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    cert_not_after_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # The certificate and NATS key the last renewal replaced: the certificate still authenticates
    # (an agent that lost the renewal's answer retries with it) until the next renewal; the key is
    # revoked at the broker.
    prev_cert_serial: str | None = Field(default=None, index=True, max_length=64)
    prev_nats_public_key: str = Field(
        default="", sa_column=Column(String(64), nullable=False, default="", server_default="")
    )
    renewed_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # Its router's clock minus ours (ms), as its last status report measured it.
    clock_offset_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    # Its agent trusts a key set and follows rotations (enrollment or a status report said so).
    rotation_aware: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False,
                                                                 server_default=false()))
    # The CA that signed its current certificate (SHA-256, hex; "" on rows from before CA rollovers:
    # the first CA), and whether its agent follows a CA rollover (controller/ca_set.py).
    cert_ca: str = Field(
        default="", sa_column=Column(String(64), nullable=False, default="", server_default="")
    )
    ca_rollover_aware: bool = Field(default=False, sa_column=Column(
        Boolean, nullable=False, default=False, server_default=false()))


class EnrollmentToken(SQLModel, table=True):
    __tablename__ = "enrollment_token"

    token_hash: str = Field(primary_key=True, max_length=64)  # sha256 hex; the secret is never stored
    gateway_id: str = Field(foreign_key="gateway.id", index=True, max_length=32)
    # Indexed: housekeeping deletes tokens some time past their expiry (controller/store/tokens.py).
    expires_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    used_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class Ioc(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "type", "value", name="uq_ioc_channel_value"),
                      Index("ix_ioc_channel_changed", "channel", "updated_at_ms", "id"))  # TAXII paging

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=48)  # "global" or "tenant:<tenant id>"; uq_ioc_channel_value indexes it
    type: int
    value: str = Field(max_length=253)
    source: str = Field(max_length=64)
    confidence: int
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0, index=True))
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # When what gateways enforce of it last changed: a new version for partners (TAXII `modified`).
    updated_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )


class Channel(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=48)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class PushLog(SQLModel, table=True):
    __tablename__ = "push_log"
    __table_args__ = (UniqueConstraint("channel", "seq", name="uq_push_channel_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=48)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # a serialized, unsigned Push
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    published: bool = Field(default=False, index=True)
    # Why the row never went out on NATS (too large even in parts): it reaches gateways by resync only.
    publish_error: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="", server_default="")
    )


class HousekeepingLease(SQLModel, table=True):
    """Which controller runs a housekeeping job this period (controller/store/lease.py): one row per
    job, taken by whoever finds it expired, so replicas on one database do not all run it."""

    __tablename__ = "housekeeping_lease"

    job: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=64)
    expires_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
