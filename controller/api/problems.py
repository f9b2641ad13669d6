"""One error body for every error the tenant API sends: RFC 9457 problem details
(application/problem+json with type, title, status, detail).

Domain errors map to statuses here, once; FastAPI's own errors (unknown route, wrong method,
validation) are rewritten into the same shape; anything unexpected is a 500 whose body says
nothing about the internals (the traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from controller.domain import errors

log = logging.getLogger("mssp.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:mssp:problem:"

# Most specific first: the first matching class decides.
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.Conflict, 409),
    (errors.Unavailable, 503),
)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


class ApiProblem(Exception):
    """An HTTP-level refusal raised from inside the app (rate limit, unacceptable media type)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "error"


def problem_body(status: int, detail: str) -> bytes:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": TYPE_PREFIX + slug(status), "title": title, "status": status, "detail": detail[:500]}
    return json.dumps(body).encode()


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(problem_body(status, detail), status_code=status, headers=headers,
                    media_type=PROBLEM_JSON)


def status_of(exc: Exception) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def _validation_detail(exc: RequestValidationError) -> str:
    """Where and what, never the rejected value (it may be a key pasted in the wrong place)."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    async def on_http(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource"
        if exc.status_code == 405:
            detail = "method not allowed on this resource"
        return problem(exc.status_code, detail, dict(exc.headers or {}))

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem(422, _validation_detail(exc))

    async def on_api_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem(exc.status, exc.detail, exc.headers)

    async def on_controller(_request: Request, exc: Exception) -> Response:
        status = status_of(exc)
        if status == 500:
            log.error("tenant API: unexpected %s: %s", type(exc).__name__, exc)
            return problem(500, "internal error; the operator has the details in the controller log")
        headers = {"WWW-Authenticate": 'Bearer realm="mssp"'} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": "5"}
        return problem(status, str(exc) or HTTPStatus(status).phrase, headers)

    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("tenant API: unhandled error", exc_info=exc)
        return problem(500, "internal error; the operator has the details in the controller log")

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ApiProblem, on_api_problem)
    app.add_exception_handler(errors.ControllerError, on_controller)
    app.add_exception_handler(Exception, on_unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses an operation can answer."""
    return {s: {"description": HTTPStatus(s).phrase,
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}
