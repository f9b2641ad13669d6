"""The store side of provisioning: where each gateway is reached over SSH, its pinned host key, and
the runs with their per-host results."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from controller.domain.errors import NotFound
from controller.provisioning.hostkeys import HostKey, parse_public_key
from controller.provisioning.runner import HostOutcome
from controller.provisioning.targets import Jump, Target, parse_jump
from controller.services.fleet import gateway_row
from controller.services.tenants import new_id, tenant_row
from controller.store import models as rows
from controller.store.db import Database
from controller.store.provisioning_models import ProvisionRun, ProvisionRunHost, SshTarget
from mssp.common.clock import now_ms


@dataclass(frozen=True)
class Known:
    """A gateway as provisioning sees it: where it is, its state, and the key it must show."""

    target: Target
    jump: Jump | None
    status: str
    agent_version: str
    host_key: HostKey | None


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str
    tenant: str
    operator: str
    agent_version: str
    status: str
    started_at_ms: int
    finished_at_ms: int
    hosts: tuple[HostOutcome, ...]


class ProvisioningRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save_targets(self, tenant_name: str, targets: list[Target], jump: Jump | None) -> None:
        """Where each router is reached; a changed address forgets the key pinned for the old one."""
        jump_text = f"{jump.user}@{jump.endpoint}" if jump else ""
        with self.db.session() as s:
            for t in targets:
                _, gw = gateway_row(s, tenant_name, t.name)
                row = s.get(SshTarget, gw.id)
                if row is None:
                    row = SshTarget(gateway_id=gw.id, host=t.host, port=t.port, user=t.user, prefix=t.prefix)
                elif (row.host, row.port) != (t.host, t.port):
                    row.host_key, row.host_key_fingerprint, row.host_key_seen_at_ms = "", "", 0
                row.host, row.port, row.user, row.prefix = t.host, t.port, t.user, t.prefix
                row.jump = jump_text
                row.updated_at_ms = now_ms()
                s.add(row)

    def known(self, tenant_name: str, names: list[str] | None = None) -> list[Known]:
        """The tenant's provisioned gateways (those named, each must exist and have been provisioned)."""
        with self.db.session(readonly=True) as s:
            tenant = tenant_row(s, tenant_name)
            query = (select(rows.Gateway, SshTarget)
                     .join(SshTarget, col(SshTarget.gateway_id) == rows.Gateway.id)
                     .where(rows.Gateway.tenant_id == tenant.id, col(rows.Gateway.retired_at_ms) == 0)
                     .order_by(col(rows.Gateway.name)))
            found = {gw.name: (gw, t) for gw, t in s.exec(query).all()}
            if names is not None:
                for name in names:
                    if name not in found:
                        gateway_row(s, tenant_name, name)  # NotFound for an unknown gateway
                        raise NotFound(f"gateway {tenant.name}/{name} was never provisioned over SSH: "
                                       "run `msspctl gateway provision` for it first")
                found = {n: found[n] for n in names}
            return [self._known(gw, t) for gw, t in found.values()]

    @staticmethod
    def _known(gw: rows.Gateway, t: SshTarget) -> Known:
        target = Target(gw.name, t.host, t.port, t.user, t.prefix)
        key = parse_public_key(target.endpoint, t.host_key) if t.host_key else None
        return Known(target, parse_jump(t.jump), gw.status, gw.agent_version, key)

    def pin_host_keys(self, tenant_name: str, seen: dict[str, HostKey]) -> list[str]:
        """Record first-contact keys by gateway name; a key already pinned is never replaced here
        (conditional update: of two runs racing on a new router, the first key wins)."""
        pinned: list[str] = []
        with self.db.session() as s:
            for name, key in seen.items():
                _, gw = gateway_row(s, tenant_name, name)
                done = s.exec(  # type: ignore[call-overload]
                    update(SshTarget).where(col(SshTarget.gateway_id) == gw.id, col(SshTarget.host_key) == "")
                    .values(host_key=key.public_key, host_key_fingerprint=key.fingerprint,
                            host_key_seen_at_ms=now_ms()))
                if done.rowcount == 1:
                    pinned.append(name)
        return pinned

    def forget_host_key(self, tenant_name: str, name: str) -> str:
        """Drop a pinned key (a router reinstalled on purpose); the fingerprint it had."""
        with self.db.session() as s:
            _, gw = gateway_row(s, tenant_name, name)
            row = s.get(SshTarget, gw.id)
            if row is None or not row.host_key:
                raise NotFound(f"no host key is recorded for {tenant_name}/{name}")
            old = row.host_key_fingerprint
            row.host_key, row.host_key_fingerprint, row.host_key_seen_at_ms = "", "", 0
            s.add(row)
            return old

    def drop_target(self, tenant_name: str, name: str) -> None:
        with self.db.session() as s:
            _, gw = gateway_row(s, tenant_name, name)
            row = s.get(SshTarget, gw.id)
            if row is not None:
                s.delete(row)

    def start_run(self, kind: str, tenant_name: str, operator: str, agent_version: str) -> str:
        with self.db.session() as s:
            tenant = tenant_row(s, tenant_name)
            run = ProvisionRun(id=new_id(), kind=kind, tenant_id=tenant.id, operator=operator,
                               agent_version=agent_version, status="running", started_at_ms=now_ms())
            s.add(run)
            return run.id

    def finish_run(self, run_id: str, outcomes: list[HostOutcome]) -> str:
        status = "failed" if any(o.state in ("failed", "unreachable") for o in outcomes) else "ok"
        with self.db.session() as s:
            run = s.get(ProvisionRun, run_id)
            if run is None:
                raise NotFound(f"unknown provisioning run {run_id}")
            run.status, run.finished_at_ms = status, now_ms()
            s.add(run)
            for o in outcomes:
                s.add(ProvisionRunHost(run_id=run_id, gateway=o.gateway, host=o.host, state=o.state, ok=o.ok,
                                       changed=o.changed, task=o.task, message=o.message, seconds=o.seconds))
        return status

    def list_runs(self, tenant_name: str, limit: int = 20) -> list[RunRecord]:
        with self.db.session(readonly=True) as s:
            tenant = tenant_row(s, tenant_name)
            runs = s.exec(select(ProvisionRun).where(ProvisionRun.tenant_id == tenant.id)
                          .order_by(col(ProvisionRun.started_at_ms).desc())
                          .limit(max(1, min(limit, 500)))).all()
            return [_record(s, r, tenant.name) for r in runs]

    def get_run(self, run_id: str) -> RunRecord:
        with self.db.session(readonly=True) as s:
            run = s.get(ProvisionRun, run_id)
            if run is None:
                raise NotFound(f"unknown provisioning run {run_id}")
            tenant = s.get(rows.Tenant, run.tenant_id)
            return _record(s, run, tenant.name if tenant else "")


def _record(s: Session, r: ProvisionRun, tenant: str) -> RunRecord:
    hosts = s.exec(select(ProvisionRunHost).where(ProvisionRunHost.run_id == r.id)
                   .order_by(col(ProvisionRunHost.gateway))).all()
    return RunRecord(r.id, r.kind, tenant, r.operator, r.agent_version, r.status, r.started_at_ms,
                     r.finished_at_ms, tuple(HostOutcome(h.gateway, h.host, h.state, h.ok, h.changed, h.task,
                                                         h.message, seconds=h.seconds) for h in hosts))
