"""Request size limits, enforced before routing: a body over the limit is 413, a query string or
path over its limit 414, header fields over theirs 431 (all problem+json). The API only reads, so
bodies are never needed; the limit still keeps a client from streaming megabytes at a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.problems import PROBLEM_JSON, problem_body


@dataclass(frozen=True)
class ApiLimits:
    rate_limit: int = 600  # requests per key per window
    rate_window_seconds: int = 60
    max_body_bytes: int = 64 * 1024
    max_query_chars: int = 2048
    max_path_chars: int = 2048
    max_header_bytes: int = 16 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> ApiLimits:
        return cls(rate_limit=settings.api_rate_limit, rate_window_seconds=settings.api_rate_window_seconds)


class _TooLarge(Exception):
    pass


async def send_problem(send: Send, status: int, detail: str) -> None:
    body = problem_body(status, detail)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, limits: ApiLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.limits
        if len(scope.get("query_string", b"")) > lim.max_query_chars:
            await send_problem(send, 414, f"query string longer than {lim.max_query_chars} bytes")
            return
        if len(scope.get("raw_path") or scope.get("path", "").encode()) > lim.max_path_chars:
            await send_problem(send, 414, f"path longer than {lim.max_path_chars} bytes")
            return
        headers = scope.get("headers", [])
        if sum(len(k) + len(v) + 4 for k, v in headers) > lim.max_header_bytes:
            await send_problem(send, 431, f"request header fields larger than {lim.max_header_bytes} bytes")
            return
        for key, value in headers:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_problem(send, 400, "invalid Content-Length")
                    return
                if declared > lim.max_body_bytes:
                    await send_problem(send, 413, f"request body larger than {lim.max_body_bytes} bytes")
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > lim.max_body_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await send_problem(send, 413, f"request body larger than {lim.max_body_bytes} bytes")
