"""`mssp-agent`: enroll, run and inspect the router daemon. argparse keeps the router install lean.

This is the agent's edge: an AgentError (gateway_agent/errors.py) becomes one line on stderr and
exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import signal
import sys
import time
from pathlib import Path

from gateway_agent import __version__, renewal, status_view
from gateway_agent.backends import BACKENDS, make_backend, nft_available
from gateway_agent.budget import BudgetedBackend, budget_for
from gateway_agent.clock import before_trust
from gateway_agent.enroll import enroll
from gateway_agent.errors import AgentError
from gateway_agent.identity import AgentIdentity
from gateway_agent.runtime import GatewayAgent
from gateway_agent.statefile import StateFile
from gateway_agent.status_file import STATUS_FILE
from gateway_agent.uninstall import uninstall
from mssp.common.clock import now_ms
from mssp.common.dirlock import DirLocked, lock_dir

LOCK_FILE = "agent.lock"  # flock held by the one `mssp-agent run` on a state dir (mssp.common.dirlock)


class CliError(AgentError):
    """A bad argument, an unreadable file named on the command line, or a state dir in use."""


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read --token-file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not token:
        raise CliError(f"--token-file {path} is empty: it should hold the token from `msspctl gateway add`")
    return token


def cmd_enroll(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else read_token(args.token_file)
    ca = None
    if args.ca_cert:
        try:
            ca = Path(args.ca_cert).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --ca-cert {args.ca_cert}: {exc.strerror}") from exc
    identity = asyncio.run(
        enroll(
            args.controller, token, Path(args.state_dir), ca_cert=ca, server_name=args.tls_server_name
        )
    )
    if args.token_file:  # one-time and now consumed: no copy of it stays on the router
        Path(args.token_file).unlink(missing_ok=True)
    print(f"enrolled as {identity.label} (gateway id {identity.gateway_id}); state in {identity.state_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    identity = AgentIdentity.load(state_dir)
    try:  # two agents on one state dir would fight over its files and the router's ruleset
        lock = lock_dir(state_dir, holder="agent", name=LOCK_FILE)
    except DirLocked as exc:
        raise CliError(str(exc)) from None
    with lock:
        return _run(args, state_dir, identity)


def _run(args: argparse.Namespace, state_dir: Path, identity: AgentIdentity) -> int:
    try:
        budget = budget_for(state_dir, args.ioc_budget)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    backend = BudgetedBackend(make_backend(args.backend, state_dir), budget)
    clock_problem = before_trust(identity.ca_path.read_bytes(), time.time())
    if clock_problem:  # the agent runs anyway: the clock may be set (NTP) while it retries
        logging.getLogger("mssp.agent").error("%s: %s", identity.label, clock_problem)
    agent = GatewayAgent(identity, backend, heartbeat_interval=args.heartbeat)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())
    return 0


def certificate_expiry(identity: AgentIdentity) -> str:
    """Read from the certificate itself: right whether or not the agent runs."""
    try:
        expires = renewal.validity(identity.cert_path)[1]
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    return dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(timespec="seconds")


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    identity = AgentIdentity.load(state_dir)
    status: dict[str, object] = {}
    status_path = state_dir / STATUS_FILE
    if status_path.exists():
        status = json.loads(status_path.read_text())
    state = StateFile(state_dir / "state").load(identity.tenant_channel)  # StateFileError: one line
    applied = state.versions() if state else None
    status.update({
        "tenant": identity.tenant_name,
        "gateway": identity.gateway_name,
        "gateway_id": identity.gateway_id,
        "controller": identity.controller,
        "gateway_endpoint": identity.gateway_endpoint,
        "nats_urls": identity.nats_urls,
        "applied": {"global_seq": applied.global_seq, "tenant_seq": applied.tenant_seq,
                    "alliance_seq": applied.alliance_seq} if applied else None,
        "ioc_count": state.ioc_count() if state else 0,
        "policy_version": state.policy.version if state else 0,
        "certificate_expires": certificate_expiry(identity),
        "signing_keys": sorted(identity.keyring().keys),
    })
    now = now_ms()
    if args.output == "json":
        print(json.dumps({**status, **status_view.freshness(status, now, state_dir / LOCK_FILE)}, indent=2))
        return 0
    for key in ("tenant", "gateway", "gateway_id", "controller", "gateway_endpoint", "backend"):
        if key in status:
            print(f"{key:>20}: {status[key]}")
    for label, text in status_view.lines(status, now, state_dir / LOCK_FILE):
        print(f"{label:>20}: {text}")
    for key in ("applied", "policy_version", "ioc_count", "ioc_budget", "left_out_by_budget",
                "certificate_expires", "certificate", "signing_keys", "last_error", "counters"):
        if key in status:
            print(f"{key:>20}: {status[key]}")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    removed = uninstall(Path(args.state_dir), LOCK_FILE)
    for line in removed:
        print(line)
    if not removed:
        print("nothing to remove: no table inet mssp, no agent dnsmasq")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mssp-agent", description="MSSP gateway agent")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"mssp-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="enroll this router with the controller (once)")
    p.add_argument("--controller", required=True, help="HOST:PORT of the controller's enrollment API")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="one-time token from `msspctl gateway add`")
    token.add_argument("--token-file", help="a file holding the token; deleted once enrolled")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--ca-cert", help="controller CA certificate (default: trust the CA pinned in the token)")
    p.add_argument("--tls-server-name", default="", help="override the TLS name checked on the controller")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("run", help="run the agent daemon")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--backend", default="nft" if nft_available() else "recording", choices=BACKENDS,
                   help="nft (default when nft is installed and we are root) or recording")
    p.add_argument("--heartbeat", type=float, default=30.0, help="seconds between status reports")
    p.add_argument("--ioc-budget", type=int, default=None,
                   help="most indicators enforced (default: enforcement.json's ioc_budget, else from RAM)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show what this agent enforces")
    p.add_argument("--state-dir", required=True)
    p.add_argument("-o", "--output", default="table", choices=["table", "json"])
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("uninstall", help="take enforcement down: delete table inet mssp, stop dnsmasq")
    p.add_argument("--state-dir", required=True)
    p.set_defaults(func=cmd_uninstall)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
