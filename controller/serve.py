"""`msspctl server run`: one controller in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal

from controller.app import ControllerApp
from controller.config import Settings


async def serve(settings: Settings) -> None:
    app = ControllerApp(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        print(f"controller listening: api {app.grpc_address}, gateways {app.gateway_address}, "
              f"nats {','.join(app.nats_urls)}; data dir {settings.data_dir}", flush=True)
        if app.metrics_server is not None:
            print(f"metrics: {app.metrics_server.url}", flush=True)
        await stop.wait()
    finally:
        await app.stop()


def raise_fd_limit() -> None:
    """Every gateway holds a connection open; the default soft limit (1024) is far too low."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_server(settings: Settings) -> None:
    raise_fd_limit()
    logging.basicConfig(level=os.environ.get("MSSP_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))
