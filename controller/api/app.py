"""create_app: the tenant API's FastAPI application over a ControllerService.

Layers, outside in: rate-limit headers (added to every counted response), size limits (413/414/431
before routing), FastAPI with problem+json errors, the routes (routes_*.py). Handlers are sync:
they run in the threadpool, off the controller's event loop, like the gRPC servicers' threads.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from controller.api import (
    openapi,
    problems,
    routes_indicators,
    routes_reports,
    routes_taxii,
    routes_tenant,
    routes_usage,
)
from controller.api.limits import ApiLimits, LimitsMiddleware
from controller.api.ratelimit import RateLimiter, RateLimitHeaders


def create_app(service: Any, limits: ApiLimits | None = None, *, clock: Any = None) -> FastAPI:
    """`service` is a ControllerService (None only to print the OpenAPI document)."""
    limits = limits or ApiLimits()
    app = FastAPI(title=openapi.TITLE, version=openapi.VERSION, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.limiter = (RateLimiter(limits.rate_limit, limits.rate_window_seconds) if clock is None
                         else RateLimiter(limits.rate_limit, limits.rate_window_seconds, clock=clock))
    problems.install(app)
    for module in (routes_tenant, routes_usage, routes_reports, routes_indicators, routes_taxii):
        app.include_router(module.router)
    app.openapi = lambda: openapi.build(app)  # type: ignore[method-assign]
    app.add_middleware(LimitsMiddleware, limits=limits)
    app.add_middleware(RateLimitHeaders)
    return app
