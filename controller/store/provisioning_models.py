"""Tables of provisioning: how each router is reached over SSH (with its pinned host key) and the
runs made against them, host by host. Times are epoch milliseconds."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Text
from sqlmodel import Field, SQLModel


def _ms(*, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, default=0, server_default="0", index=index)


class SshTarget(SQLModel, table=True):
    """A provisioned gateway's SSH address and install prefix, kept for upgrade and decommission."""

    __tablename__ = "ssh_target"

    gateway_id: str = Field(primary_key=True, foreign_key="gateway.id", max_length=32)
    host: str = Field(max_length=253)
    port: int = Field(default=22)
    user: str = Field(max_length=32)
    jump: str = Field(default="", max_length=300)  # USER@HOST[:PORT]
    prefix: str = Field(max_length=255)
    host_key: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    host_key_fingerprint: str = Field(default="", max_length=64)  # SHA256:...
    host_key_seen_at_ms: int = Field(default=0, sa_column=_ms())
    updated_at_ms: int = Field(default=0, sa_column=_ms())


class ProvisionRun(SQLModel, table=True):
    __tablename__ = "provision_run"
    __table_args__ = (Index("ix_provision_run_tenant_started", "tenant_id", "started_at_ms"),)

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)  # provision | upgrade | decommission
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    operator: str = Field(default="", max_length=63)
    agent_version: str = Field(default="", max_length=64)
    status: str = Field(max_length=16)  # running | ok | failed
    started_at_ms: int = Field(sa_column=_ms())
    finished_at_ms: int = Field(default=0, sa_column=_ms())


class ProvisionRunHost(SQLModel, table=True):
    __tablename__ = "provision_run_host"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="provision_run.id", max_length=32, index=True)
    gateway: str = Field(max_length=63)
    host: str = Field(max_length=253)
    state: str = Field(max_length=16)  # ok | changed | failed | unreachable | skipped
    ok: int = Field(default=0)
    changed: int = Field(default=0)
    task: str = Field(default="", max_length=200)
    message: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    seconds: float = Field(default=0.0, sa_column=Column(Float, nullable=False, server_default="0"))
