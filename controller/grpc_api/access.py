"""Who may call what on the operator endpoint: one interceptor in front of every operator service.

It authenticates the bearer credential (the bootstrap operator.token, compared in constant time
without touching the store, or a named operator's token looked up by hash in a worker thread),
refuses a read-only operator any call that changes something, sets who is acting for the call
(controller/operators.py), and writes an audit row after every change that succeeded. Services not
operated by people (enrollment, health) pass through untouched. A method this module does not know
is a change: new calls are admin-only and audited until someone says otherwise.

Who acts is set, not reset: grpc.aio runs every call in a task of its own, whose context dies with
it (and `asyncio.to_thread` carries it into the servicer's worker thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from controller.domain.errors import Unauthenticated
from controller.grpc_api import audit_trail as trail
from controller.operators import ACTING, ADMIN, BOOTSTRAP_ACTOR, Actor
from controller.service import ControllerService
from controller.services.audit import AuditEntry

log = logging.getLogger("mssp.controller.access")

OPEN_SERVICES = frozenset({"mssp.v1.EnrollmentService", "grpc.health.v1.Health"})
# Calls that only read: a read-only operator may make them, and they are not audited.
_READS = re.compile(r"(?:List|Get|Show|Export|Diff|Describe)[A-Z]\w*|FleetStatus|Top|Usage|WhoAmI")
_BEARER = "Bearer "


def is_read(method: str) -> bool:
    return _READS.fullmatch(method) is not None


@dataclass(frozen=True)
class _Call:
    service: str
    method: str
    write: bool


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class OperatorAccess(grpc.aio.ServerInterceptor):
    def __init__(self, service: ControllerService, bootstrap_digest: bytes) -> None:
        self.service = service
        self._bootstrap = bootstrap_digest

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None or service in OPEN_SERVICES:
            return handler
        call = _Call(service, method, write=not is_read(method))
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(call, handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._stream_unary(call, handler.stream_unary))
        streaming = handler.unary_stream or handler.stream_stream
        if inspect.iscoroutinefunction(streaming):  # answers with context.write(): wrapped as a coroutine
            wrapped = self._unary(call, streaming)
        else:
            wrapped = self._streaming(call, streaming)
        if handler.unary_stream:
            return handler._replace(unary_stream=wrapped)
        return handler._replace(stream_stream=wrapped)

    async def admit(self, call: _Call, context: grpc.aio.ServicerContext) -> Actor:
        """The caller, allowed to make `call`; the call is aborted otherwise."""
        try:
            actor = await self._identify(context)
            if call.write and actor.role != ADMIN:
                raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                              f"operator {actor.name!r} is {actor.role}: {call.method} changes state "
                              "and needs an admin")
            return actor
        except Refused as exc:
            await context.abort(exc.code, str(exc))
            raise  # abort raises; this satisfies the type checker

    async def _identify(self, context: grpc.aio.ServicerContext) -> Actor:
        for key, value in context.invocation_metadata() or ():
            if key != "authorization":
                continue
            if not isinstance(value, str) or not value.startswith(_BEARER):
                break
            token = value[len(_BEARER):].strip()
            if hmac.compare_digest(token_digest(token), self._bootstrap):
                return BOOTSTRAP_ACTOR
            try:
                actor = await asyncio.to_thread(self.service.operators.identify, token)
            except Exception as exc:  # the store away: say so, do not claim the token is bad
                log.warning("operator lookup failed: %s", exc)
                raise Refused(grpc.StatusCode.UNAVAILABLE, "operator store unavailable; retry") from None
            if actor is None:
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "operator credential rejected")
            return actor
        raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                      "missing operator credential (authorization: Bearer <token>)")

    async def _audit(self, call: _Call, actor: Actor, request: Any, before: Any, response: Any) -> None:
        req = MessageToDict(request, preserving_proto_field_name=True) if isinstance(request, Message) else {}
        if not call.write or trail.is_dry_run(req) or trail.changed_nothing(response):
            return
        entry = AuditEntry(
            operator=actor.name, role=actor.role, action=call.method,
            tenant=trail.tenant_of(call.method, req, before), target=trail.target_of(req),
            request=trail.as_json(trail.scrub(req)),
            before=trail.as_json(before), after=trail.as_json(trail.plain(response)),
        )
        try:
            await asyncio.to_thread(self.service.audit.record, entry)
        except Exception:  # the change is committed: report it to the caller as done, loudly here
            log.error("audit row for %s by %s not written", call.method, actor.name, exc_info=True)

    async def _before(self, call: _Call, request: Any) -> Any:
        if not call.write:
            return None
        return await asyncio.to_thread(trail.before, self.service, call.method, request)

    def _unary(self, call: _Call, inner: Callable[..., Any]) -> Callable[..., Any]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            actor = await self.admit(call, context)
            ACTING.set(actor)
            before = await self._before(call, request)
            response = await inner(request, context)
            await self._audit(call, actor, request, before, response)
            return response

        return unary

    def _streaming(self, call: _Call, inner: Callable[..., Any]) -> Callable[..., Any]:
        """A server stream (the request is one message or a stream of them)."""
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            actor = await self.admit(call, context)
            ACTING.set(actor)
            async for item in inner(request, context):
                yield item
            await self._audit(call, actor, request, None, None)

        return streaming

    def _stream_unary(self, call: _Call, inner: Callable[..., Any]) -> Callable[..., Any]:
        async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            actor = await self.admit(call, context)
            first: list[Any] = []

            async def tapped() -> AsyncIterator[Any]:
                async for item in requests:
                    if not first:
                        first.append(item)
                    yield item

            ACTING.set(actor)
            response = await inner(tapped(), context)
            await self._audit(call, actor, first[0] if first else None, None, response)
            return response

        return stream_unary



class OperatorCalls:
    """Base of a servicer whose calls check the operator (authenticate_operator) and run their
    store work in a worker thread."""

    def __init__(self, service: ControllerService, operator_token_digest: bytes) -> None:
        self.service = service
        self._digest = operator_token_digest

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
        authenticate_operator(context, self._digest)
        return await asyncio.to_thread(fn, *args, **kwargs)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def authenticate_operator(context: grpc.aio.ServicerContext, digest: bytes) -> None:
    """What a servicer checks itself: the interceptor admitted the call, or (a servicer mounted
    without it, as some tests do) the bootstrap credential, compared in constant time."""
    if ACTING.get() is not None:
        return
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith(_BEARER):
            if hmac.compare_digest(token_digest(value[len(_BEARER):].strip()), digest):
                return
            raise Unauthenticated("operator credential rejected")
    raise Unauthenticated("missing operator credential (authorization: Bearer <token>)")
