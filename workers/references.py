"""An item's reference sources read into the images sent to Gemini, in the order sent (base,
subjects, then as given), each with what it was (`UsedSource`, kept on the result and in the
lineage of what it made).

A query source was searched before the item runs, on a query worker (`search_sources`, whose
hits are recorded on the job), so a generate worker runs no model; uploads and URLs are read
when the item runs, URLs with the same rules as embed URLs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from shared import keys
from shared.contract import (
    ErrorCode,
    GenerateItem,
    GenerateRequest,
    ReferenceSource,
    SearchQuery,
    SearchRequest,
    SourceHit,
    UsedSource,
)
from shared.errors import CodedError, NotFound
from shared.gemini import ReferenceImage
from shared.images import downscale
from shared.milvus.tenants import TenantVectors
from shared.sources import fetch_url
from workers.context import WorkerContext
from workers.search import search

FOUND_FIELD = "found"  # the job record's field: each item's query sources' hits
Found = dict[int, dict[int, list[SourceHit]]]  # item index → source position → hits


@dataclass
class Gathered:
    """What an item's sources came to: the images to send and the sources as used."""

    images: list[ReferenceImage] = field(default_factory=list)
    used: list[UsedSource] = field(default_factory=list)

    @property
    def asset_ids(self) -> list[str]:
        return [hit.asset_id for source in self.used for hit in source.hits]


def needs_search(request: GenerateRequest) -> bool:
    """Whether any item has a query source (answered on a query worker first)."""
    return any(s.query is not None for item in request.generations() for s in item.sources)


def search_sources(ctx: WorkerContext, request: GenerateRequest, tenant: str | None) -> Found:
    """On a query worker: every query source searched as a search job would search it (its
    collection's model, filter and mode)."""
    found: Found = {}
    for index, item in enumerate(request.generations()):
        for position, source in enumerate(item.sources):
            if source.query is None:
                continue
            collection = source.collection or request.collection
            ranked, errors = search(ctx, _as_search(source, collection), tenant, fresh=False)
            if errors:
                raise CodedError(ErrorCode(errors[0].code), errors[0].message)
            hits = [
                SourceHit(asset_id=h.asset_id, score=h.score, collection=collection)
                for h in ranked.get(0, [])
            ]
            found.setdefault(index, {})[position] = hits
    return found


def _as_search(source: ReferenceSource, collection: str) -> SearchRequest:
    query = SearchQuery.model_validate(
        {"text": source.query} | ({"mode": source.mode} if source.mode else {})
    )
    return SearchRequest(
        collection=collection, queries=[query], top_k=source.top_k, filter=source.filter
    )


def record_found(ctx: WorkerContext, job_id: str, found: Found) -> None:
    raw = {
        i: {p: [h.model_dump() for h in hits] for p, hits in s.items()} for i, s in found.items()
    }
    ctx.redis.hset(keys.job(job_id), FOUND_FIELD, json.dumps(raw))


def recorded_found(ctx: WorkerContext, job_id: str) -> Found:
    raw = ctx.redis.hget(keys.job(job_id), FOUND_FIELD)
    if not raw:
        return {}
    return {
        int(i): {int(p): [SourceHit.model_validate(h) for h in hits] for p, hits in s.items()}
        for i, s in json.loads(raw).items()
    }


def gather(
    ctx: WorkerContext,
    scope: TenantVectors,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    found: Found,
) -> Gathered:
    """Every source's images, in the order sent. Raises a CodedError (the item's error) for a
    source that cannot be read: an asset gone, an upload expired, a URL refused, a query that
    found nothing."""
    gathered = Gathered()
    for position, source in item.ordered_sources():
        label = source.label or source.query
        used = UsedSource(kind=source.kind, role=source.role, label=label)
        images = _read(ctx, scope, request, source, used, found.get(index, {}).get(position))
        gathered.used.append(used)
        gathered.images += [
            ReferenceImage(data, mime, role=source.role, label=label) for data, mime in images
        ]
    return gathered


def _read(
    ctx: WorkerContext,
    scope: TenantVectors,
    request: GenerateRequest,
    source: ReferenceSource,
    used: UsedSource,
    hits: list[SourceHit] | None,
) -> list[tuple[bytes, str]]:
    """One source's images (downscaled), filling in `used` with what it was."""
    settings = ctx.settings
    if source.upload_id is not None:
        data, _ = ctx.uploads.read(source.upload_id, scope.tenant)
        used.upload_id, used.sha256 = source.upload_id, hashlib.sha256(data).hexdigest()
        return [_shrink(ctx, data)]
    if source.url is not None:
        used.url = str(source.url)
        data = fetch_url(
            used.url, settings.max_upload_bytes, settings.url_timeout_s, settings.allow_private_urls
        )
        used.sha256 = hashlib.sha256(data).hexdigest()
        return [_shrink(ctx, data)]
    collection = source.collection or request.collection
    used.collection = collection
    if source.query is not None:
        used.query = source.query
        if not hits:
            raise CodedError(
                ErrorCode.no_references_found,
                f"the reference query {source.query!r} found nothing in {collection}",
            )
        used.hits = hits
    else:
        used.hits = [SourceHit(asset_id=a, collection=collection) for a in source.asset_ids or []]
    return [_asset(ctx, scope, hit) for hit in used.hits]


def _asset(ctx: WorkerContext, scope: TenantVectors, hit: SourceHit) -> tuple[bytes, str]:
    record = scope.get_asset(hit.collection, hit.asset_id)
    if record is None:
        raise NotFound(
            ErrorCode.asset_not_found, f"reference {hit.asset_id} is not in {hit.collection}"
        )
    return _shrink(ctx, ctx.blobs.get(record.content_key))


def _shrink(ctx: WorkerContext, data: bytes) -> tuple[bytes, str]:
    """A reference downscaled to a sensible longest side (Gemini bills by the tile)."""
    return downscale(data, ctx.settings.reference_max_side, ctx.settings.max_image_pixels)
