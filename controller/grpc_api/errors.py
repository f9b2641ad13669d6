"""The controller's errors -> gRPC status codes: the one mapping for every servicer, unary calls
and server streams alike (maps_domain_errors wraps both).

A domain error says what the request or the state forbids; infrastructure that failed (the broker
not connected, a publish or flush that failed, an update it did not confirm) is UNAVAILABLE, so a
client retries instead of reading it as a refusal. Anything else is INTERNAL with no details leaked.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import nats.errors

from controller.domain.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Conflict,
    ControllerError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from controller.ratelimit import RateLimited

log = logging.getLogger("mssp.controller.grpc")
PROBLEMS_KEY = "mssp-problems-bin"  # JSON list of strings, when a request had several mistakes

STATUS_OF: dict[type[ControllerError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}

# What the NATS client raises when the broker is gone or does not answer: broker failures too.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError, nats.errors.NoServersError, nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
)

F = TypeVar("F", bound=Callable[..., Any])
MAX_PROBLEMS_BYTES = 6000  # gRPC refuses metadata over 8 KiB by default


def problems_blob(problems: tuple[str, ...]) -> bytes:
    """As many problems as fit, in order, as a JSON list."""
    kept: list[str] = []
    size = 2
    for p in problems:
        size += len(json.dumps(p).encode()) + 1
        if size > MAX_PROBLEMS_BYTES:
            break
        kept.append(p)
    return json.dumps(kept).encode()


def status_code(exc: ControllerError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return grpc.StatusCode.FAILED_PRECONDITION  # a DomainError without a code of its own


async def abort_for(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    """Abort the call with the status `exc` maps to (every servicer method comes here)."""
    if isinstance(exc, BROKER_ERRORS):
        exc = BrokerUnavailable(f"message broker unavailable: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, ControllerError):
        if isinstance(exc, Unavailable):
            log.warning("%s: %s", method, exc)
        if isinstance(exc, InvalidInput) and exc.problems:  # every one, for `-o json` (cli/client.py)
            context.set_trailing_metadata(((PROBLEMS_KEY, problems_blob(exc.problems)),))
        await context.abort(status_code(exc), str(exc))
    log.error("unhandled error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error (see controller log)")


def maps_domain_errors(method: F) -> F:
    """Map the controller's errors to status codes, for a unary method or a server stream."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_for(exc, context, method.__name__)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_for(exc, context, method.__name__)

    return unary  # type: ignore[return-value]
