"""Provisioning tests and bench/provision.py: SSH keys made with cryptography (no ssh-keygen
needed), agent bundles (a real one, a newer build, or a stand-in that only passes the manifest
check), and Site: the controller running inside a RouterFleet's ctl namespace with msspctl there."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.controller_proc import MSSPCTL, clean_env
from tests.support.routers import CTL, RouterFleet

ROOT = Path(__file__).resolve().parents[2]


def ssh_key(path: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return path


def empty_bundle(path: Path, version: str = "0.1.0") -> Path:
    """A manifest and a stand-in wheel: enough for runs that fail before anything is installed."""
    path.mkdir(parents=True)
    wheel = f"mssp_gateway-{version}-py3-none-any.whl"
    (path / wheel).write_bytes(b"")
    (path / "bundle.json").write_text(json.dumps({"package": "mssp-gateway", "version": version,
                                                  "python": "3.11", "platforms": [], "files": [wheel]}))
    return path


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released: a refused connection at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Run inside the controller's namespace with a (copied) agent state dir: does the gateway API still
# take this certificate, and does the broker still take these credentials? Prints JSON.
REVOKED_PROBE = r"""
import asyncio, json, ssl, sys
from pathlib import Path
import grpc, nats
from gateway_agent.identity import AgentIdentity
from mssp.v1 import gateway_pb2, gateway_pb2_grpc

ident = AgentIdentity.load(Path(sys.argv[1]))
creds = grpc.ssl_channel_credentials(ident.ca_path.read_bytes(), ident.key_path.read_bytes(),
                                     ident.cert_path.read_bytes())
with grpc.secure_channel(ident.gateway_endpoint, creds) as ch:
    try:
        gateway_pb2_grpc.GatewayServiceStub(ch).GetBrokers(gateway_pb2.GetBrokersRequest(), timeout=10)
        grpc_result = "OK"
    except grpc.RpcError as exc:
        grpc_result = exc.code().name

async def broker():
    tls = ssl.create_default_context(cafile=str(ident.ca_path))
    try:
        nc = await nats.connect(servers=ident.nats_urls, user_credentials=str(ident.creds_path), tls=tls,
                                allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0)
    except Exception as exc:
        return f"refused: {exc}"
    await nc.close()
    return "OK"

print(json.dumps({"grpc": grpc_result, "nats": asyncio.run(broker())}))
"""


def until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        time.sleep(0.2)


def by_host(summary: dict[str, object]) -> dict[str, dict[str, object]]:
    hosts = summary["hosts"]
    assert isinstance(hosts, list)
    return {h["gateway"]: h for h in hosts}


def build_bundle(out: Path, version: str | None = None, scratch: Path | None = None) -> Path:
    """`msspctl agent bundle`; with `version`, from a copy of the source that says so (a newer build)."""
    source = ROOT
    if version is not None:
        assert scratch is not None
        source = scratch / "source"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".venv", ".git", "tests", "bench", "docs", "*.egg-info", "__pycache__", "build"))
        pyproject = source / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
    done = subprocess.run([MSSPCTL, "agent", "bundle", "--out", str(out), "--source", str(source)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    return out


@dataclass
class Site:
    """The controller in the fleet's ctl namespace (Ansible runs there too), one tenant's routers."""

    fleet: RouterFleet
    data_dir: Path
    env: dict[str, str]
    bundle: Path
    hosts_csv: Path
    router_options: Path
    log: Path

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path, fleet: RouterFleet, bundle: Path) -> Iterator[Site]:
        """The controller stops with the fleet (its process lives in the ctl namespace)."""
        data_dir = root / "data"
        env = clean_env(MSSP_DATA_DIR=str(data_dir), MSSP_SERVER_CERT_HOSTS=json.dumps([CTL]),
                        MSSP_NATS_LISTEN=f"{CTL}:0", MSSP_NATS_CERT_HOSTS=json.dumps([CTL]))
        log = root / "controller.log"
        fleet.spawn(fleet.ctl, [MSSPCTL, "server", "run", "--data-dir", str(data_dir), "--grpc-listen",
                                f"{CTL}:7443", "--gateway-listen", f"{CTL}:7444", "--advertise-host", CTL,
                                "--api-listen", "127.0.0.1:0"], log=log, env=env)
        hosts = root / "hosts.csv"
        hosts.write_text("name,host,prefix\n" + "".join(
            f"r{i},{r.wan},{fleet.prefix(i)}\n" for i, r in sorted(fleet.routers.items())))
        options = root / "router-options.json"
        options.write_text(json.dumps({"lan_ifaces": ["lan0"], "wan_ifaces": ["wan0"]}))
        site = cls(fleet, data_dir, env, bundle, hosts, options, log)
        until(lambda: site.ctl("tenant", "list").returncode == 0, f"controller up\n{site.log_tail()}", 60)
        yield site

    def ctl(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """msspctl inside the controller's namespace, as an operator there would run it."""
        return subprocess.run(["ip", "netns", "exec", self.fleet.ctl, MSSPCTL, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def ok_json(self, *args: str) -> object:
        done = self.ctl(*args, "-o", "json")
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    def provision(self, *extra: str, key: Path | None = None) -> tuple[int, dict[str, object]]:
        done = self.ctl("gateway", "provision", "--tenant", "acme", "-f", str(self.hosts_csv), "--key",
                        str(key or self.fleet.client_key), "--bundle", str(self.bundle), "--router-options",
                        str(self.router_options), "--service", "supervisor", "--wait", "300", *extra,
                        "-o", "json")
        assert done.stdout, f"no summary: exit {done.returncode}\n{done.stderr}\n{self.log_tail()}"
        return done.returncode, json.loads(done.stdout)

    def gateways(self) -> dict[str, dict[str, object]]:
        found = self.ok_json("gateway", "list", "--tenant", "acme")
        assert isinstance(found, list)
        return {g["name"]: g for g in found}

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
