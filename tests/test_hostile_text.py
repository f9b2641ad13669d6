"""A gateway cannot drive the operator's terminal: every text it controls (status report fields,
telemetry dimensions, hosts, IOC subjects, agent version) is made inert when it is stored and again
when msspctl prints it, in tables, detail views and JSON.

The end-to-end test runs a real controller (embedded nats-server, SQLite, gRPC), a real enrolled
agent reporting over mTLS and publishing over its own NATS credentials, and the real `msspctl`
console script as a shell would run it, then checks the captured bytes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from controller.cli import output
from controller.service import StatusUpdate
from controller.status_recorder import inert
from controller.store.models import Gateway
from controller.telemetry.models import DetectionEvent, GatewayHealth, RollupHourly
from gateway_agent import runtime
from gateway_agent.telemetry.publisher import MSG_ID_HEADER, batch_subject, msg_id
from mssp.common.metrics import CATEGORY_BYTES, DNS_QUERIES, HOST_EGRESS, IOC_HITS
from mssp.common.text import clean_line, clean_text, has_unsafe
from mssp.v1 import common_pb2, telemetry_pb2
from tests.support.controller_proc import clean_env, run_msspctl
from tests.support.fleet import RunningController

# Set the window title, clear the screen, paint a fake red line, reverse the text, ask for a report.
EVIL = "\x1b]0;owned\x07\x1b[2J\x1b[31mFAKE\u202eevil\x9b6n\x7f\r"
# What may not reach the terminal: every C0 but newline, DEL, C1, bidi controls and separators.
FORBIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def test_every_unsafe_character_is_escaped_and_nothing_else() -> None:
    for code in range(0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        ch = chr(code)
        line = clean_line(f"a{ch}b")
        assert not FORBIDDEN.search(line) and not has_unsafe(line), hex(code)
        if not FORBIDDEN.search(ch) and ch not in "\n":
            assert line == f"a{ch}b", hex(code)  # printable text, any script, is left alone
    assert clean_line(EVIL) == "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mFAKE\\u202eevil\\x9b6n\\x7f\\x0d"
    assert clean_line("a\nb\tc") == "a\\x0ab\\x09c"
    assert clean_text("a\nb\tc\x1b") == "a\nb\tc\\x1b"  # multi-line output keeps its lines
    assert clean_line("\x1b" * 100, 10) == "\\x1b\\x1b\\x"  # cut after escaping: no raw control left


def test_status_fields_are_inert_before_they_are_stored_and_still_fit_their_columns() -> None:
    update_ = StatusUpdate(gateway_id="gw1", applied=common_pb2.Versions(), agent_version=EVIL * 4,
                           backend=EVIL, last_error=(EVIL * 40)[:500], seen_at_ms=1)
    clean = inert(update_)
    assert not any(has_unsafe(v) for v in (clean.agent_version, clean.backend, clean.last_error))
    assert (len(clean.agent_version), len(clean.backend), len(clean.last_error)) == (64, 32, 500)
    plain = StatusUpdate(gateway_id="gw1", applied=common_pb2.Versions(), agent_version="1.2.3",
                         backend="nft", last_error="apply failed: Ünïcode ok", seen_at_ms=1)
    assert inert(plain) is plain


def test_every_output_path_of_msspctl_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever reaches output.* (rows written before this release, a new command), it prints inert."""
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    t = output.table("a", "b")
    output.add_row(t, EVIL, output.yes_no(True))
    output.console().print(t)
    output.console().print(output.details(("last error", EVIL)))
    output.console().print(f"gateway {output.esc(EVIL)} and a plain {EVIL}")
    output.plain(f"yaml: {EVIL}\nnext: line\n")
    output.print_json({"last_error": EVIL})
    output.print_json(telemetry_pb2.Alert(subject=EVIL))
    out = buf.getvalue()
    assert not FORBIDDEN.search(out), repr(out)
    assert out.count("FAKE") == 7 and "next: line" in out
    assert json.loads(out[out.index("{"): out.index("}") + 1])["last_error"] == EVIL  # JSON loses nothing


def _msspctl(ctl: RunningController, *args: str) -> str:
    env = clean_env(MSSP_DATA_DIR=str(ctl.settings.data_dir), COLUMNS="400")
    result: subprocess.CompletedProcess[str] = run_msspctl(*args, env=env)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout + result.stderr


CLI_VIEWS = [
    ("gateway", "show", "acme/branch-1"),
    ("gateway", "show", "acme/branch-1", "-o", "json"),
    ("fleet", "status", "--tenant", "acme"),
    ("fleet", "status", "-o", "json"),
    ("alerts", "list", "--tenant", "acme"),
    ("alerts", "list", "-o", "json"),
    ("telemetry", "top", "-t", "acme", "--by", "host"),
    ("telemetry", "top", "-t", "acme", "--by", "ioc"),
    ("telemetry", "top", "-t", "acme", "--by", "destination"),
    ("telemetry", "top", "-t", "acme", "--by", "category"),
    ("telemetry", "top", "-t", "acme", "--by", "host", "-o", "json"),
]


async def _views(ctl: RunningController, *, tables_only: bool = False) -> dict[tuple[str, ...], str]:
    views = [v for v in CLI_VIEWS if not (tables_only and "json" in v)]
    return {args: await asyncio.to_thread(_msspctl, ctl, *args) for args in views}


def _stored_texts(ctl: RunningController) -> list[str]:
    tables = (RollupHourly, DetectionEvent, GatewayHealth)
    out: list[str] = []
    with ctl.app.db.read_engine.connect() as conn:
        gw = conn.execute(select(Gateway.__table__)).mappings().one()  # type: ignore[attr-defined]
        out += [gw["last_error"], gw["agent_version"], gw["backend"]]
        for model in tables:
            for row in conn.execute(select(model.__table__)).mappings():  # type: ignore[attr-defined]
                out += [v for v in row.values() if isinstance(v, str)]
    return out


async def _wait(predicate: Any, within: float = 60.0) -> None:
    """A deadline for hangs, not a timing assertion."""
    async with asyncio.timeout(within):
        for _ in iter(int, 1):
            if await asyncio.to_thread(predicate):
                return
            await asyncio.sleep(0.1)


async def test_gateway_controlled_text_reaches_the_operator_inert(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch
) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "branch-1")
    agent = sim.agent
    await asyncio.wait_for(agent.synced.wait(), 60)
    # A hostile (or compromised) agent: its version string and last error are whatever it likes.
    monkeypatch.setattr(runtime, "__version__", EVIL)
    agent.last_error = EVIL
    assert await agent.report() is not None  # the real mTLS report the heartbeat also sends

    # Telemetry over the agent's own broker connection (the credentials enrollment gave it).
    await _wait(lambda: agent.nats_connected)
    assert agent._nc is not None
    now = int(time.time() * 1000)
    batch = telemetry_pb2.TelemetryBatch(
        gateway_id=agent.identity.gateway_id, tenant_id=agent.identity.tenant_id, batch_seq=1,
        period_start_ms=now - 30_000, period_end_ms=now,
    )
    batch.health.agent_version = EVIL
    for metric, dim, packets, nbytes, count in [
        (HOST_EGRESS, EVIL, 3, 3000, 0),
        (IOC_HITS, f"{EVIL}|{EVIL}", 2, 120, 0),
        (DNS_QUERIES, f"{EVIL}.example|{EVIL}", 0, 0, 4),
        (CATEGORY_BYTES, f"{EVIL}|{EVIL}", 1, 500, 0),
    ]:
        batch.records.add(metric=metric, dimension=dim, packets=packets, bytes=nbytes, count=count)
    await agent._nc.jetstream(timeout=10).publish(
        batch_subject(batch.tenant_id, batch.gateway_id), batch.SerializeToString(),
        headers={MSG_ID_HEADER: msg_id(batch.gateway_id, 1, "e2e")},
    )
    consumer = controller.app.telemetry
    assert consumer is not None

    def stored() -> bool:
        texts = _stored_texts(controller)
        return consumer.stats.batches >= 1 and "FAKE" in texts[0]  # last_error: the report is flushed

    await _wait(stored)
    assert consumer.stats.rejected == 0
    # At ingest: nothing unsafe was stored, and the evidence is still readable.
    texts = _stored_texts(controller)
    assert not [t for t in texts if has_unsafe(t)]
    assert sum("FAKE" in t for t in texts) >= 6

    for args, text in (await _views(controller)).items():
        assert not FORBIDDEN.search(text), f"{args}: {text!r}"
        assert "FAKE" in text, f"{args}: {text!r}"

    # Rows stored raw (by a controller from before this fix): msspctl still prints them inert.
    await sim.stop()
    with controller.app.db.session() as s:
        s.connection().execute(update(Gateway).values(last_error=EVIL, agent_version=EVIL[:64]))
        s.connection().execute(update(RollupHourly).values(dimension=EVIL))
        s.connection().execute(update(DetectionEvent).values(subject=EVIL, host=EVIL[:64]))
    for args, text in (await _views(controller, tables_only=True)).items():
        assert not FORBIDDEN.search(text), f"{args}: {text!r}"
        assert "FAKE" in text, f"{args}: {text!r}"
