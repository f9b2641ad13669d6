"""Failed gRPC calls by status code, counted by an interceptor in front of everything else on a
server (so refusals of the operator access check count too). Labelled by server and code only:
both sets are small, where methods or callers would not be."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter

Behavior = Callable[..., Any]


class GrpcErrorCounter(grpc.aio.ServerInterceptor):
    def __init__(self, counter: Counter, server: str) -> None:
        self.counter = counter
        self.server = server

    def _count(self, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        code = context.code()
        if code is None and exc is not None:  # no status set: what gRPC answers for the exception
            code = grpc.StatusCode.CANCELLED if isinstance(exc, asyncio.CancelledError | GeneratorExit) \
                else grpc.StatusCode.UNKNOWN
        if code is not None and code != grpc.StatusCode.OK:
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            self.counter.labels(self.server, name).inc()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._streaming(handler.unary_stream))
        return handler._replace(stream_stream=self._streaming(handler.stream_stream))

    def _unary(self, behavior: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                self._count(context, exc)
                raise
            self._count(context, None)
            return response

        return call

    def _streaming(self, behavior: Behavior) -> Behavior:
        """A streamed answer comes from a coroutine writing with context.write() (gRPC tells the two
        kinds apart by the function: the wrapper must be the same kind) or from an async generator."""
        if inspect.iscoroutinefunction(behavior):
            return self._unary(behavior)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                self._count(context, exc)
                raise
            self._count(context, None)

        return call
