"""Provision, upgrade and decommission routers: gateways and tokens from the store, one ansible-runner
run per call, host keys pinned on first contact, the outcome of every host kept with the run.

Each run gets its own directory; the SSH key and the one-time tokens sit in a 0700 secrets directory
beside it for the run's duration only. Blocking: call from a worker thread."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.domain.errors import AlreadyExists, InvalidInput
from controller.domain.models import GatewayStatus
from controller.provisioning import hostkeys
from controller.provisioning.bundle import Bundle
from controller.provisioning.records import Known, ProvisioningRecords
from controller.provisioning.runner import HostOutcome, PlaybookRun
from controller.provisioning.targets import Jump, Target, check_private_key
from controller.services.gateways import Gateways

RUNS_KEPT = 30
SERVICE_MANAGERS = ("auto", "systemd", "procd", "supervisor")
ENFORCEMENT_KEYS = {"lan_ifaces", "wan_ifaces", "never_block", "deny", "dns", "native_threshold",
                    "ioc_budget"}
_BATCH = re.compile(r"(\d{1,4})(%?)")


@dataclass(frozen=True)
class SshAccess:
    private_key: bytes
    become: bool = False
    jump: Jump | None = None


@dataclass(frozen=True)
class Site:
    """What a run needs to know about this controller."""

    data_dir: Path
    playbooks: Path
    enroll_address: str  # HOST:PORT routers enroll at
    msspctl: str  # command prefix the wait step runs on this host


@dataclass(frozen=True)
class RunOptions:
    bundle: Bundle | None  # None only for a decommission
    enforcement: dict[str, Any] = field(default_factory=dict)
    service_manager: str = "auto"
    wait_seconds: int = 180
    batch: str = "1"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    hosts: list[HostOutcome]


OnHost = Callable[[HostOutcome], None]
_NO_BUNDLE = Bundle(Path("/nonexistent"), "", "", (), ())  # a decommission installs nothing


def check_options(options: RunOptions) -> None:
    if options.bundle is None:
        raise InvalidInput("no agent bundle given: build one with `msspctl agent bundle --out DIR`")
    if options.service_manager not in SERVICE_MANAGERS:
        raise InvalidInput(f"service manager {options.service_manager!r}: choose "
                           f"{', '.join(SERVICE_MANAGERS)}")
    unknown = set(options.enforcement) - ENFORCEMENT_KEYS
    if unknown:
        raise InvalidInput(f"router options: unknown keys {sorted(unknown)} "
                           f"(allowed: {sorted(ENFORCEMENT_KEYS)})")
    if not 10 <= options.wait_seconds <= 3600:
        raise InvalidInput(f"wait must be 10-3600 seconds, not {options.wait_seconds}")
    m = _BATCH.fullmatch(options.batch)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(1)) > 100):
        raise InvalidInput(f"batch {options.batch!r}: give a host count (1, 5) or a percentage (10%)")


class Provisioner:
    """`token` makes the full enrollment token of a secret (it pins the CA of the moment) and
    `ca_pin` says that CA's fingerprint: both asked at each run, as a CA rollover moves them."""

    def __init__(self, gateways: Gateways, records: ProvisioningRecords, site: Site, *,
                 token: Callable[[str], str], ca_pin: Callable[[], str]) -> None:
        self.gateways = gateways
        self.records = records
        self.site = site
        self.token = token
        self.ca_pin = ca_pin

    # ---- the three runs -------------------------------------------------------------------------

    def provision(self, tenant: str, targets: list[Target], access: SshAccess, options: RunOptions, *,
                  operator: str, on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
        """Gateways that do not exist are created; each one not enrolled gets a fresh token."""
        check_options(options)
        check_private_key(access.private_key)
        if not targets:
            raise InvalidInput("no routers to provision")
        tokens = self._tokens(tenant, targets)
        self.records.save_targets(tenant, targets, access.jump)
        known = self.records.known(tenant, [t.name for t in targets])
        return self._run("provision", tenant, known, access, options, operator, on_host, cancelled, tokens)

    def upgrade(self, tenant: str, names: list[str] | None, access: SshAccess, options: RunOptions, *,
                operator: str, on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
        check_options(options)
        check_private_key(access.private_key)
        known = [k for k in self.records.known(tenant, names) if k.status == GatewayStatus.ENROLLED]
        if not known:
            raise InvalidInput(f"tenant {tenant} has no enrolled gateway provisioned over SSH to upgrade")
        return self._run("upgrade", tenant, known, access, options, operator, on_host, cancelled, {})

    def decommission(self, tenant: str, name: str, access: SshAccess, options: RunOptions, *,
                     operator: str, on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
        """The router cleaned; revoking the gateway is the caller's (it tells the broker too)."""
        check_options(replace(options, bundle=options.bundle or _NO_BUNDLE))
        check_private_key(access.private_key)
        known = self.records.known(tenant, [name])
        result = self._run("decommission", tenant, known, access, options, operator, on_host, cancelled, {})
        if result.status == "ok":
            self.records.drop_target(tenant, name)
        return result

    def _tokens(self, tenant: str, targets: list[Target]) -> dict[str, str]:
        tokens: dict[str, str] = {}
        for t in targets:
            try:
                _, secret, _ = self.gateways.add_gateway(tenant, t.name)
            except AlreadyExists:
                gw = self.gateways.fleet.get_gateway(tenant, t.name)
                if gw.status == GatewayStatus.ENROLLED:
                    continue
                _, secret, _, _ = self.gateways.issue_token(tenant, t.name)
            tokens[t.name] = self.token(secret)
        return tokens

    # ---- one run ----------------------------------------------------------------------------------

    def _run(self, kind: str, tenant: str, known: list[Known], access: SshAccess, options: RunOptions,
             operator: str, on_host: OnHost, cancelled: Callable[[], bool],
             tokens: dict[str, str]) -> RunResult:
        version = options.bundle.version if options.bundle else ""
        run_id = self.records.start_run(kind, tenant, operator, version)
        base = self.site.data_dir / "provisioning"
        run_dir, secrets = base / "runs" / run_id, base / "secrets" / run_id
        control = Path(tempfile.mkdtemp(prefix="mssp-cp-"))  # short: ssh's socket paths are limited
        outcomes: list[HostOutcome] = []
        try:
            run_dir.mkdir(parents=True)
            secrets.mkdir(parents=True, mode=0o700)
            key_file = _secret(secrets / "ssh_key", access.private_key)
            known_hosts = run_dir / "known_hosts"
            pinned = {k.host_key.endpoint: k.host_key for k in known if k.host_key}
            hostkeys.write_known_hosts(known_hosts, list(pinned.values()))
            token_files = {n: _secret(secrets / f"token-{n}", t.encode()) for n, t in tokens.items()}
            inventory = {"all": {"hosts": {
                k.target.name: self._host_vars(tenant, k, access, key_file, known_hosts, token_files)
                for k in known}}}
            playbook = PlaybookRun(run_dir, self.site.playbooks / f"{kind}.yml", inventory,
                                   self._extravars(options), self._envvars(control, run_dir), run_id,
                                   forks=min(50, len(known)))
            outcomes = playbook.run({k.target.name: k.target.host for k in known}, on_host, cancelled)
            self._pin(tenant, known, pinned, known_hosts, outcomes)
        finally:
            shutil.rmtree(secrets, ignore_errors=True)
            shutil.rmtree(control, ignore_errors=True)
            _rotate(base / "runs", RUNS_KEPT)
            status = self.records.finish_run(run_id, outcomes or [
                HostOutcome(k.target.name, k.target.host, "failed", message="the run did not start")
                for k in known])
        return RunResult(run_id, status, outcomes)

    def _host_vars(self, tenant: str, k: Known, access: SshAccess, key_file: Path, known_hosts: Path,
                   token_files: dict[str, Path]) -> dict[str, Any]:
        t = k.target
        ssh = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=accept-new", "-o", "HashKnownHosts=no",
               "-o", "IdentitiesOnly=yes",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if k.jump is not None:
            inner = " ".join([*ssh, "-i", str(key_file), "-p", str(k.jump.port), "-W", "%h:%p",
                              f"{k.jump.user}@{k.jump.host}"])
            ssh += ["-o", f"ProxyCommand=ssh {inner}"]
        host_vars: dict[str, Any] = {
            "ansible_host": t.host, "ansible_port": t.port, "ansible_user": t.user,
            "ansible_ssh_private_key_file": str(key_file), "ansible_ssh_common_args": shlex.join(ssh),
            "ansible_become": access.become, "ansible_python_interpreter": "auto_silent",
            "mssp_tenant": tenant, "mssp_gateway": t.name, "mssp_prefix": t.prefix,
            "mssp_controller": self.site.enroll_address, "mssp_ca_pin": self.ca_pin(),
        }
        if t.name in token_files:
            host_vars["mssp_token_file"] = str(token_files[t.name])
        return host_vars

    def _extravars(self, options: RunOptions) -> dict[str, Any]:
        bundle = options.bundle or _NO_BUNDLE
        return {"mssp_bundle_dir": str(bundle.directory), "mssp_agent_version": bundle.version,
                "mssp_ctl": self.site.msspctl, "mssp_wait_timeout": options.wait_seconds,
                "mssp_serial": options.batch, "mssp_enforcement": options.enforcement,
                "mssp_service_manager": options.service_manager}

    def _envvars(self, control: Path, run_dir: Path) -> dict[str, str]:
        return {
            "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=10s",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "ANSIBLE_ROLES_PATH": str(self.site.playbooks / "roles"),
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_TIMEOUT": "15", "ANSIBLE_DEPRECATION_WARNINGS": "False",
        }

    def _pin(self, tenant: str, known: list[Known], pinned: dict[str, hostkeys.HostKey], known_hosts: Path,
             outcomes: list[HostOutcome]) -> None:
        fresh = hostkeys.newly_seen(known_hosts, pinned)
        by_endpoint = {k.target.endpoint: k for k in known}
        self.records.pin_host_keys(tenant, {by_endpoint[e].target.name: key for e, key in fresh.items()
                                            if e in by_endpoint})
        by_name = {k.target.name: k for k in known}
        for o in outcomes:
            k = by_name[o.gateway]
            if o.state == "unreachable" and k.host_key and hostkeys.is_key_change(o.message):
                o.message = (f"host key of {k.target.endpoint} changed: the store pinned "
                             f"{k.host_key.fingerprint}; if the router was reinstalled, run `msspctl gateway "
                             f"forget-host-key {tenant}/{k.target.name}` and provision it again")


def _secret(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data if data.endswith(b"\n") or path.name != "ssh_key" else data + b"\n")
    return path


def _rotate(runs: Path, keep: int) -> None:
    with contextlib.suppress(OSError):
        old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)[:-keep]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)


def enforcement_from_json(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"router options are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("router options must be a JSON object")
    return data
