"""A read-only TAXII 2.1 server under /taxii2/ for partner MSSPs and CERTs (partner keys, scope
taxii:read): discovery, one API root, one collection of the shared indicators, its objects and
manifest with added_after / limit / next paging.

Kept out of the OpenAPI document: TAXII is its own specification, with its own media type.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import Response

from controller.api.auth import authenticate, bearer
from controller.domain.apikeys import KIND_PARTNER
from controller.domain.errors import InvalidInput, NotFound, PermissionDenied
from controller.services.intel_export import stamp
from controller.services.shared_collection import MAX_PAGE, SharedPage

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
API_ROOT = "shared"
COLLECTION_ID = "8f2e4b1c-3d5a-4e6f-9a7b-1c2d3e4f5a6b"
TAXII_READ = "taxii:read"

router = APIRouter(prefix="/taxii2", include_in_schema=False)


def partner(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    principal = authenticate(request, credentials)
    if principal.kind != KIND_PARTNER:
        raise PermissionDenied("TAXII needs a partner key (msspctl partner create NAME)")
    principal.require(TAXII_READ)


def taxii(body: dict[str, Any], **headers: str) -> Response:
    return Response(json.dumps(body), media_type=TAXII, headers=headers)


def collection() -> dict[str, Any]:
    return {"id": COLLECTION_ID, "title": "MSSP shared indicators",
            "description": "Indicators the MSSP shares (TLP:CLEAR and TLP:GREEN); names no customer.",
            "can_read": True, "can_write": False, "media_types": [STIX]}


def _collection_id(collection_id: str) -> None:
    if collection_id != COLLECTION_ID:
        raise NotFound(f"unknown collection {collection_id[:64]!r}")


def _added_after(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("added_after must be an RFC 3339 timestamp, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidInput("added_after needs a time zone (end it with Z)")
    return int(moment.timestamp() * 1000)


def _page(request: Request, added_after: str | None, limit: int, next_token: str | None) -> SharedPage:
    return request.app.state.service.shared.page(  # type: ignore[no-any-return]
        added_after_ms=_added_after(added_after), cursor=next_token, limit=limit)


def _headers(page: SharedPage) -> dict[str, str]:
    if not page.objects:
        return {}
    return {"X-TAXII-Date-Added-First": stamp(page.objects[0].date_added_ms),
            "X-TAXII-Date-Added-Last": stamp(page.objects[-1].date_added_ms)}


LIMIT = Query(100, ge=1, le=MAX_PAGE)


@router.get("/", dependencies=[Depends(partner)])
def discovery(request: Request) -> Response:
    root = str(request.url_for("api_root", api_root=API_ROOT))
    return taxii({"title": "MSSP TAXII server", "default": root, "api_roots": [root]})


@router.get("/{api_root}/", name="api_root", dependencies=[Depends(partner)])
def api_root(api_root: str) -> Response:
    if api_root != API_ROOT:
        raise NotFound(f"unknown API root {api_root[:64]!r}")
    return taxii({"title": "MSSP shared indicators", "versions": [TAXII], "max_content_length": 0})


@router.get(f"/{API_ROOT}/collections/", dependencies=[Depends(partner)])
def collections() -> Response:
    return taxii({"collections": [collection()]})


@router.get(f"/{API_ROOT}/collections/{{collection_id}}/", dependencies=[Depends(partner)])
def get_collection(collection_id: str) -> Response:
    _collection_id(collection_id)
    return taxii(collection())


@router.get(f"/{API_ROOT}/collections/{{collection_id}}/objects/", dependencies=[Depends(partner)])
def objects(request: Request, collection_id: str, added_after: str | None = None, limit: int = LIMIT,
            next: str | None = None) -> Response:
    _collection_id(collection_id)
    page = _page(request, added_after, limit, next)
    body: dict[str, Any] = {"more": page.more, "objects": [o.stix for o in page.objects]}
    if page.next:
        body["next"] = page.next
    return taxii(body, **_headers(page))


@router.get(f"/{API_ROOT}/collections/{{collection_id}}/manifest/", dependencies=[Depends(partner)])
def manifest(request: Request, collection_id: str, added_after: str | None = None, limit: int = LIMIT,
             next: str | None = None) -> Response:
    _collection_id(collection_id)
    page = _page(request, added_after, limit, next)
    body: dict[str, Any] = {"more": page.more, "objects": [
        {"id": o.stix["id"], "date_added": stamp(o.date_added_ms), "version": o.stix["modified"],
         "media_type": STIX} for o in page.objects]}
    if page.next:
        body["next"] = page.next
    return taxii(body, **_headers(page))
