"""The embedded broker dies with the controller: a controller killed with SIGKILL (no atexit, no
stop()) must not leave a nats-server holding its port and JetStream store. Real processes: a child
Python starts the real EmbeddedNats, prints the broker's pid, and is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from controller.nats.auth import NatsIdentity
    from controller.nats.embedded import EmbeddedNats

    async def main() -> None:
        root = Path(sys.argv[1])
        broker = EmbeddedNats(NatsIdentity.load_or_create(root / "keys"), root / "server")
        await broker.start()
        print(broker.pid, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; it only waits for its new parent to reap it
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_broker_exits_when_the_controller_is_killed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'protos'}"}
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=env)
    broker_pid = 0
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline().strip() or 0)
        assert broker_pid > 0 and _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(broker_pid), "nats-server outlived the killed controller"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if broker_pid and _alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
