"""Gateway status reports, coalesced. After a global push every gateway reports within a second or
two; one transaction per report would queue the whole fleet's writes in front of the next push.
Reports are kept in memory (the latest per gateway wins) and written in one batch per interval,
and the desired versions sent back come from one read of the channel heads per interval."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import Executor

from controller.domain.models import StatusUpdate, Versions
from controller.service import ControllerService
from controller.services.channels import desired_from_heads
from mssp.common.aio import cancel_and_wait
from mssp.common.text import clean_line, has_unsafe

log = logging.getLogger("mssp.controller.status")


class StatusRecorder:
    def __init__(self, service: ControllerService, executor: Executor, *, interval: float = 0.25) -> None:
        self.service = service
        self.executor = executor
        self.interval = interval
        self._pending: dict[str, StatusUpdate] = {}
        self._heads: dict[str, int] = {}
        self._heads_at = 0.0
        self._heads_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="status-recorder")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.flush()

    def submit(self, update: StatusUpdate) -> None:
        self._pending[update.gateway_id] = inert(update)

    async def desired(self, tenant_id: str, sharing: bool) -> Versions:
        """What the gateway should be at; at most `interval` old (a newer push also reaches it by NATS)."""
        async with self._heads_lock:
            if time.monotonic() - self._heads_at > self.interval:
                loop = asyncio.get_running_loop()
                self._heads = await loop.run_in_executor(self.executor, self.service.channel_heads)
                self._heads_at = time.monotonic()
        return desired_from_heads(self._heads, tenant_id, sharing)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = list(self._pending.values()), {}
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self.service.record_statuses, batch)
        except Exception:
            log.exception("writing %d gateway status reports failed; they are retried", len(batch))
            for update in batch:
                self._pending.setdefault(update.gateway_id, update)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()


def inert(update: StatusUpdate) -> StatusUpdate:
    """Every text a gateway reports, with terminal controls escaped before it is stored (an operator's
    `gateway show` must not run them), cut again to its column's size: escaping makes text longer."""
    changes = {
        f.name: clean_line(value, _TEXT_LIMITS.get(f.name)) for f in dataclasses.fields(update)
        if isinstance(value := getattr(update, f.name), str) and has_unsafe(value)
    }
    return dataclasses.replace(update, **changes) if changes else update


_TEXT_LIMITS = {"agent_version": 64, "backend": 32, "last_error": 500}  # the Gateway columns
