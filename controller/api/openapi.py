"""The OpenAPI document: what /openapi.json serves, and `python -m controller.api.openapi`, which
prints it for the committed copy (docs/openapi.json; a test keeps the two equal)."""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from controller.api.problems import Problem

TITLE = "MSSP tenant API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Read-only API for a tenant (a small business, its accountant, its BI system): gateways, usage "
    "and charges, security reports, alerts. Authenticate with `Authorization: Bearer <API key>`. "
    "Every error is RFC 9457 problem+json; every list pages with `?limit=&cursor=` (`next_cursor`). "
    "Responses carry `RateLimit-Policy`/`RateLimit` (draft-ietf-httpapi-ratelimit-headers); past the "
    "quota: 429 with Retry-After. Tables are also CSV with `Accept: text/csv`."
)


def build(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
        app.openapi_schema = schema
    return app.openapi_schema


def document(app: FastAPI) -> str:
    """The committed form: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(build(app), indent=2, sort_keys=True) + "\n"


def main() -> None:
    from controller.api.app import create_app

    sys.stdout.write(document(create_app(None)))


if __name__ == "__main__":
    main()
