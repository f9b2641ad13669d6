"""Feeds against a real HTTP server on loopback: conditional requests, sync, failures that keep the
previous entries; and the CLI against a real controller (issue 11)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.domain.errors import InvalidInput
from controller.service import ControllerService
from controller.store.db import Database
from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok


class FeedServer:
    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.etag = '"v1"'
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(dict(self.headers))
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(server.status)
                self.send_header("ETag", server.etag)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.txt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def test_feed_refreshes_with_conditional_requests_and_keeps_entries_on_failure(
    svc: ControllerService, feed_server: FeedServer
) -> None:
    feed_server.body = b"198.51.100.1\n198.51.100.2\n"
    svc.feeds.add("drop", url=feed_server.url, fmt="plain", every_seconds=3600)
    first = svc.feeds.run("drop")
    assert first.result is not None and first.result.new == 2 and first.feed.entries == 2
    assert first.feed.last_error == "" and first.feed.last_success_ms > 0

    again = svc.feeds.run("drop")  # same ETag: 304, nothing parsed or pushed
    assert again.not_modified and again.result is None
    assert feed_server.requests[-1].get("If-None-Match") == '"v1"'

    feed_server.body, feed_server.etag = b"198.51.100.2\n198.51.100.3\n", '"v2"'
    synced = svc.feeds.run("drop")
    assert synced.result is not None and (synced.result.new, synced.result.removed) == (1, 1)
    assert sorted(r.ioc.value for r in svc.list_iocs()) == ["198.51.100.2", "198.51.100.3"]

    feed_server.status, feed_server.etag = 500, '"v3"'
    failed = svc.feeds.run("drop")
    assert "HTTP 500" in failed.feed.last_error and failed.feed.entries == 2
    feed_server.status, feed_server.body, feed_server.etag = 200, b"# emptied by a broken mirror\n", '"v4"'
    empty = svc.feeds.run("drop")
    assert "no valid entries" in empty.feed.last_error
    assert sorted(r.ioc.value for r in svc.list_iocs()) == ["198.51.100.2", "198.51.100.3"]

    removed = svc.feeds.remove("drop")
    assert removed.result is not None and removed.result.removed == 2
    assert svc.list_iocs() == [] and svc.feeds.list() == []


def test_feed_add_refuses_bad_definitions(svc: ControllerService, tmp_path: Path) -> None:
    cases = [
        ({"url": "ftp://198.51.100.1/x"}, "http"),
        ({"url": "http://198.51.100.1/x", "path": "/tmp/x"}, "exactly one"),
        ({"path": "relative.txt"}, "absolute"),
        ({"path": str(tmp_path / "missing.txt")}, "does not exist"),
        ({"url": "http://198.51.100.1/x", "fmt": "xml"}, "format"),
        ({"url": "http://198.51.100.1/x", "every_seconds": 5}, "--every"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidInput, match=message):
            svc.feeds.add("bad", **kwargs)  # type: ignore[arg-type]
    assert svc.feeds.list() == []


def test_cli_import_feed_allowlist_and_export(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    feed = tmp_path / "c2.csv"
    feed.write_text("# Feodo-style export\nfirst_seen_utc,dst_ip,dst_port,c2_status\n"
                    "2026-11-01 00:00:00,198.51.100.61,443,online\n"
                    "2026-11-01 00:00:00,10.1.2.3,443,online\n"
                    "2026-11-01 00:00:00,not-an-ip!,443,online\n")
    strict = run("ioc", "import", str(feed))
    assert_failed(strict, "line 5")
    dry = as_json(run("ioc", "import", str(feed), "--skip-invalid", "--dry-run", "-o", "json"))
    assert isinstance(dry, dict) and dry["dry_run"] is True and dry["new"] == 1
    done = as_json(run("ioc", "import", str(feed), "--skip-invalid", "--tlp", "green", "-o", "json"))
    assert isinstance(done, dict) and (done["new"], done["refused"], done["invalid"]) == (1, 1, 1)
    listed = as_json(run("ioc", "list", "-o", "json"))
    assert isinstance(listed, list) and [(i["ioc"]["value"], i["sources"]) for i in listed] == [
        ("198.51.100.61", ["import"])]

    assert_ok(run("allowlist", "add", "203.0.113.0/24", "--note", "office"))
    assert_failed(run("ioc", "add", "203.0.113.5"), "allow-list")
    entries = as_json(run("allowlist", "list", "-o", "json"))
    assert isinstance(entries, list) and entries[0]["value"] == "203.0.113.0/24"

    outside = tmp_path / "feed.txt"
    outside.write_text("198.51.100.62\n")
    assert_failed(run("feed", "add", "local", "--path", str(outside)), "feed directory")
    plain = controller_proc.data_dir / "feeds" / "feed.txt"  # path feeds live under MSSP_FEED_DIR
    plain.parent.mkdir(exist_ok=True)
    plain.write_text("198.51.100.62\n")
    assert_ok(run("feed", "add", "local", "--path", str(plain), "--format", "plain", "--every", "1h"))
    ran = as_json(run("feed", "run", "local", "-o", "json"))
    assert isinstance(ran, dict) and ran["result"]["new"] == 1
    feeds = as_json(run("feed", "list", "-o", "json"))
    assert isinstance(feeds, list) and feeds[0]["entries"] == 1

    shown = as_json(run("ioc", "show", "198.51.100.61", "-o", "json"))
    assert isinstance(shown, dict) and [(c["source"], c["tlp"], c["decays"]) for c in shown["claims"]] == [
        ("import", "green", True)]
    assert shown["claims"][0]["score"] == pytest.approx(80, abs=0.5)
    assert_failed(run("ioc", "show", "198.51.100.200"), "not in global")

    links = tmp_path / "links.txt"
    links.write_text("http://c2-panel.example/gate.php\n")
    assert_ok(run("ioc", "import", str(links), "--format", "plain", "--scope", "global"))
    kept = as_json(run("ioc", "urls", "-o", "json"))
    assert isinstance(kept, list) and [(u["url"], u["host_blocked"]) for u in kept] == [
        ("http://c2-panel.example/gate.php", True)]

    out = tmp_path / "out.json"
    assert_ok(run("ioc", "export", "--format", "stix", "--out", str(out)))
    bundle = json.loads(out.read_text())
    assert [o["pattern"] for o in bundle["objects"]] == ["[ipv4-addr:value = '198.51.100.61']"]
    assert_ok(run("feed", "remove", "local"))
    assert_failed(run("feed", "run", "local"), "unknown feed")
