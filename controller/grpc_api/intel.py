"""IntelService: what `msspctl ioc import|export`, `allowlist`, `feed` and `sighting` call.
Operator-authenticated like OperatorService; an import streams the file in (the controller parses
it: it is the boundary that judges every value), an export streams the file out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from controller.domain.errors import InvalidInput
from controller.grpc_api import convert
from controller.grpc_api.errors import maps_domain_errors
from controller.grpc_api.operator import authenticate_operator
from controller.operators import acting_operator_name
from controller.service import ControllerService
from controller.services.allowlist import AllowRecord
from controller.services.feeds import FeedRun, FeedView
from controller.services.intel_import import ImportOptions, ImportResult
from controller.services.sighting_views import SightingView, list_sightings, sighting_by_id
from controller.services.urls import list_urls
from mssp.v1 import intel_pb2, intel_pb2_grpc

Ctx = grpc.aio.ServicerContext
MAX_IMPORT_BYTES = 512 * 1024 * 1024
EXPORT_CHUNK = 1024 * 1024


def import_result(r: ImportResult) -> intel_pb2.ImportResult:
    return intel_pb2.ImportResult(
        scope=r.scope, source=r.source, dry_run=r.dry_run, entries=r.entries, new=r.new,
        refreshed=r.refreshed, unchanged=r.unchanged, removed=r.removed, invalid=r.invalid,
        unsupported=r.unsupported, refused=r.refused, urls=r.urls, seqs=r.seqs,
        problems=[intel_pb2.ImportProblem(where=p.where, reason=p.reason, kind=p.kind) for p in r.problems],
    )


def allow_entry(r: AllowRecord) -> intel_pb2.AllowEntry:
    return intel_pb2.AllowEntry(value=r.value, scope=r.scope, note=r.note, created_at_ms=r.created_at_ms,
                                matching=r.matching)


def feed_info(f: FeedView) -> intel_pb2.FeedInfo:
    return intel_pb2.FeedInfo(
        name=f.name, location=f.location, kind=f.kind, format=f.format, scope=f.scope,
        every_seconds=f.every_seconds, last_run_ms=f.last_run_ms, last_success_ms=f.last_success_ms,
        last_error=f.last_error, entries=f.entries, next_run_ms=f.next_run_ms,
    )


def feed_run(run: FeedRun) -> intel_pb2.FeedRunResult:
    reply = intel_pb2.FeedRunResult(feed=feed_info(run.feed), not_modified=run.not_modified)
    if run.result is not None:
        reply.result.CopyFrom(import_result(run.result))
    return reply


def import_options(o: intel_pb2.ImportOptions) -> ImportOptions:
    return ImportOptions(
        fmt=o.format or "auto", scope=o.scope or "global", source=o.source or None,
        confidence=o.confidence if o.has_confidence else None,
        ttl_seconds=o.ttl_seconds if o.has_ttl else None, tlp=o.tlp or None, column=o.column or None,
        skip_invalid=o.skip_invalid, dry_run=o.dry_run, filename=o.filename[:255],
    )


class IntelServicer(intel_pb2_grpc.IntelServiceServicer):
    def __init__(self, service: ControllerService, operator_token_digest: bytes,
                 on_change: Callable[[], None]) -> None:
        self.service = service
        self._digest = operator_token_digest
        self.on_change = on_change

    async def _call(self, context: Ctx, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        authenticate_operator(context, self._digest)
        return await asyncio.to_thread(fn, *args, **kwargs)

    @maps_domain_errors
    async def ImportIocs(
        self, request_iterator: AsyncIterator[intel_pb2.ImportChunk], context: Ctx
    ) -> intel_pb2.ImportResult:
        authenticate_operator(context, self._digest)  # before reading a byte of the file
        options: intel_pb2.ImportOptions | None = None
        parts: list[bytes] = []
        size = 0
        async for chunk in request_iterator:
            if options is None:
                if not chunk.HasField("options"):
                    raise InvalidInput("the first chunk of an import must carry its options")
                options = chunk.options
            size += len(chunk.data)
            if size > MAX_IMPORT_BYTES:
                raise InvalidInput(f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MiB; split it")
            parts.append(chunk.data)
        if options is None:
            raise InvalidInput("empty import: no options and no data")
        result = await self._call(context, self.service.importer.import_feed, b"".join(parts),
                                  import_options(options))
        if result.seqs:
            self.on_change()
        return import_result(result)

    @maps_domain_errors
    async def ExportIocs(
        self, request: intel_pb2.ExportIocsRequest, context: Ctx
    ) -> AsyncIterator[intel_pb2.ExportChunk]:
        data, count = await self._call(context, self.service.exporter.export, request.scope or "global",
                                       request.format, tuple(request.tlp))
        for start in range(0, len(data), EXPORT_CHUNK):
            yield intel_pb2.ExportChunk(data=data[start : start + EXPORT_CHUNK])
        yield intel_pb2.ExportChunk(count=count)

    @maps_domain_errors
    async def ShowIoc(self, request: intel_pb2.ShowIocRequest, context: Ctx) -> intel_pb2.IocDetail:
        record, claims = await self._call(context, self.service.show_ioc, request.value,
                                          request.scope or "global")
        return intel_pb2.IocDetail(info=convert.ioc_info(record), claims=[
            intel_pb2.IocClaim(source=c.source, confidence=c.confidence, expires_at_ms=c.expires_at_ms,
                               tlp=c.tlp, last_seen_ms=c.last_seen_ms, decays=c.decays, score=c.score)
            for c in claims])

    @maps_domain_errors
    async def ListUrls(self, request: intel_pb2.ListUrlsRequest, context: Ctx) -> intel_pb2.ListUrlsResponse:
        limit = min(request.limit or 1000, 10_000)
        urls = await self._call(context, list_urls, self.service.db, request.scope or None, limit)
        return intel_pb2.ListUrlsResponse(urls=[intel_pb2.UrlIndicator(
            url=u.url, host=u.host, host_blocked=u.host_blocked, source=u.source, scope=u.scope,
            first_seen_ms=u.first_seen_ms, last_seen_ms=u.last_seen_ms) for u in urls])

    @maps_domain_errors
    async def AddAllow(self, request: intel_pb2.AllowRequest, context: Ctx) -> intel_pb2.AllowEntry:
        record = await self._call(context, self.service.allowlist.add, request.value,
                                  request.scope or "global", request.note)
        return allow_entry(record)

    @maps_domain_errors
    async def RemoveAllow(
        self, request: intel_pb2.AllowRequest, context: Ctx
    ) -> intel_pb2.RemoveAllowResponse:
        removed = await self._call(context, self.service.allowlist.remove, request.value,
                                   request.scope or "global")
        return intel_pb2.RemoveAllowResponse(removed=removed)

    @maps_domain_errors
    async def ListAllow(
        self, request: intel_pb2.ListAllowRequest, context: Ctx
    ) -> intel_pb2.ListAllowResponse:
        records = await self._call(context, self.service.allowlist.list, request.scope or None)
        return intel_pb2.ListAllowResponse(entries=[allow_entry(r) for r in records])

    @maps_domain_errors
    async def AddFeed(self, request: intel_pb2.AddFeedRequest, context: Ctx) -> intel_pb2.FeedInfo:
        view = await self._call(
            context, self.service.feeds.add, request.name, url=request.url or None, path=request.path or None,
            taxii=request.taxii or None, collection=request.collection or None,
            token_env=request.token_env or None,
            fmt=request.format or "auto", column=request.column or None, scope=request.scope or "global",
            every_seconds=request.every_seconds,
            confidence=request.confidence if request.has_confidence else None, tlp=request.tlp or None,
        )
        return feed_info(view)

    @maps_domain_errors
    async def ListFeeds(
        self, request: intel_pb2.ListFeedsRequest, context: Ctx
    ) -> intel_pb2.ListFeedsResponse:
        views = await self._call(context, self.service.feeds.list)
        return intel_pb2.ListFeedsResponse(feeds=[feed_info(v) for v in views])

    @maps_domain_errors
    async def RunFeed(self, request: intel_pb2.FeedRef, context: Ctx) -> intel_pb2.FeedRunResult:
        run = await self._call(context, self.service.feeds.run, request.name)
        self.on_change()
        return feed_run(run)

    @maps_domain_errors
    async def RemoveFeed(self, request: intel_pb2.FeedRef, context: Ctx) -> intel_pb2.FeedRunResult:
        run = await self._call(context, self.service.feeds.remove, request.name)
        self.on_change()
        return feed_run(run)

    @maps_domain_errors
    async def ListSightings(
        self, request: intel_pb2.ListSightingsRequest, context: Ctx
    ) -> intel_pb2.ListSightingsResponse:
        views = await self._call(context, list_sightings, self.service.db, request.tenant or None,
                                 request.since_ms, request.state or None)
        return intel_pb2.ListSightingsResponse(sightings=[sighting_info(v) for v in views])

    @maps_domain_errors
    async def PromoteSighting(
        self, request: intel_pb2.PromoteSightingRequest, context: Ctx
    ) -> intel_pb2.SightingInfo:
        ttl = request.ttl_seconds if request.has_ttl else None
        await self._call(context, self.service.sightings.promote, request.id, request.scope or None, ttl)
        self.on_change()
        return await self._one(context, request.id)

    @maps_domain_errors
    async def DismissSighting(self, request: intel_pb2.SightingRef, context: Ctx) -> intel_pb2.SightingInfo:
        await self._call(context, self.service.sightings.dismiss, request.id)
        return await self._one(context, request.id)

    @maps_domain_errors
    async def ReportFalsePositive(
        self, request: intel_pb2.FalsePositiveRequest, context: Ctx
    ) -> intel_pb2.FalsePositiveResult:
        tenant_id = await self._call(context, self.service.tenant_id, request.tenant)
        done = await self._call(context, self.service.false_positives.report, tenant_id, request.value,
                                by=acting_operator_name())
        self.on_change()
        return intel_pb2.FalsePositiveResult(value=done.value, new=done.new, withdrawn=done.withdrawn)

    async def _one(self, context: Ctx, candidate_id: str) -> intel_pb2.SightingInfo:
        return sighting_info(await self._call(context, sighting_by_id, self.service.db, candidate_id))


def sighting_info(v: SightingView) -> intel_pb2.SightingInfo:
    return intel_pb2.SightingInfo(
        id=v.id, type=v.type, value=v.value, state=v.state, tenants=v.tenants,
        sharing_tenants=v.sharing_tenants,
        gateways=v.gateways, hosts=v.hosts, count=v.count, first_seen_ms=v.first_seen_ms,
        last_seen_ms=v.last_seen_ms, confidence=v.confidence, scope=v.scope, decided_by=v.decided_by,
        decided_at_ms=v.decided_at_ms, reason=v.reason,
        seen_at=[intel_pb2.SightingWhere(tenant=w.tenant, gateway=w.gateway, host=w.host, via=w.via,
                                         count=w.count, first_seen_ms=w.first_seen_ms,
                                         last_seen_ms=w.last_seen_ms)
                 for w in v.seen_at],
    )
