"""The monthly HTML report opened in a real headless Chromium (Debian's package): it loads with no
console error and a screenshot is saved in the test's temp dir. Skips with the reason where there is
no Chromium. The console check is shown to fail on a page that does log an error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.reports import render
from controller.store.db import Database
from tests.test_reports import PERIOD, FakeBilling, seed

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (`apt-get install chromium`; .ci/sysdeps.sh installs it)")

# Chromium prints the page's console messages (and uncaught exceptions) to stderr with
# --enable-logging=stderr as `[pid:tid:date:INFO:CONSOLE:line] "message", source: url (line)`.
_CONSOLE = re.compile(r":CONSOLE[:(\]]|Uncaught")


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """Load `page` headless, screenshot it; the console lines it logged. Every host name resolves to
    nothing: the test never reaches the network (test_reports checks the HTML names no URL)."""
    assert CHROMIUM is not None
    shot = tmp_path / f"{page.stem}.png"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--screenshot={shot}", "--window-size=1200,2000", "--enable-logging=stderr", "--v=0",
        page.resolve().as_uri(),
    ]
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if _CONSOLE.search(line)], shot


def test_console_check_catches_a_page_that_logs_an_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><p>broken</p>'
                    '<script>console.error("report-broken"); notDefined();</script></body></html>')
    lines, shot = open_in_chromium(page, tmp_path)
    assert any("report-broken" in line for line in lines), lines
    assert any("Uncaught ReferenceError" in line for line in lines), lines
    assert shot.stat().st_size > 0


def test_monthly_report_opens_without_console_errors(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    try:
        s = seed(db)
        html = render.monthly_html(db, FakeBilling(), s.acme, PERIOD)
    finally:
        db.dispose()
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    lines, shot = open_in_chromium(page, tmp_path)
    assert lines == []
    assert shot == tmp_path / "report.png"
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
