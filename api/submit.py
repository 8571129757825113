"""The submit checks: what each job request must pass before its job is written, then the
write itself (the job record and its first task, once per idempotency key).

Each `accept_*` takes the request model and the caller and either returns the job or raises
a CodedError. Checks run on the event loop where they are computation or a recent read (the
rules, what this process read of a collection lately), and in the thread pool where they
must ask Milvus, Redis or the disk; the job is written with the asyncio Redis client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Header
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, load_collection
from api.errors import responses
from api.long_poll import FINISHED_IN_TIME
from api.metrics import JOBS_SUBMITTED
from shared.contract import (
    BrandCheckRequest,
    DuplicatesRequest,
    EmbedRequest,
    ErrorCode,
    GenerateRequest,
    Job,
    JobKind,
    Kit,
    ReferenceSource,
    ReindexJob,
    ReindexRequest,
    SearchRequest,
)
from shared.errors import CodedError, Conflict, NotFound
from shared.milvus.reindexing import ReindexMark
from shared.milvus.tenants import TenantVectors
from shared.rules import (
    check_generation,
    check_item_count,
    check_model_allowed,
    check_sources,
    check_text,
    check_webhook_url,
)
from shared.settings import Settings
from shared.sources import check_url, resolve_library_path
from shared.tasks import (
    PLAN_BRAND_CHECK,
    PLAN_DUPLICATES,
    PLAN_EMBED,
    PLAN_REINDEX,
    RUN_GENERATE,
    RUN_SEARCH,
)

E = ErrorCode

IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, description="one job per key"),
]
# What any submit can be refused with beside its own checks: a webhook it cannot call, an
# idempotency key sent before with another body, a body that is not JSON.
SUBMIT_ERRORS = (
    E.webhook_not_configured,
    E.forbidden_address,
    E.unresolvable_host,
    E.unsupported_url,
    E.idempotency_key_reused,
    E.malformed_json,
)


def submit_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a submit that can also be refused with `codes`."""
    return {**FINISHED_IN_TIME, **responses(*codes, *SUBMIT_ERRORS)}


# ── each kind's checks ──────────────────────────────────────────────────────────────────────


async def accept_embed(caller: Caller, body: EmbedRequest, idempotency_key: str | None) -> Job:
    settings = caller.state.settings
    check_item_count(len(body.items), settings.max_items_per_job)
    if body.directory is not None:
        await run_in_threadpool(resolve_library_path, body.directory.path, settings.library_roots)
    return await enqueue(caller, JobKind.embed, PLAN_EMBED, body, idempotency_key)


async def accept_search(caller: Caller, body: SearchRequest, idempotency_key: str | None) -> Job:
    for query in body.queries:
        check_query(query.text, caller.state.settings)
    info = await load_collection(caller, body.collection)
    if any("keyword" in q.finders for q in body.queries) and not info.keyword_search:
        await run_in_threadpool(require_keyword_search, caller.vectors, body.collection)
    if upload_ids := [q.upload_id for q in body.queries if q.upload_id]:
        await run_in_threadpool(require_uploads, caller, upload_ids)
    if asset_ids := [q.asset_id for q in body.queries if q.asset_id]:
        await run_in_threadpool(require_assets, caller.vectors, body.collection, asset_ids)
    return await enqueue(caller, JobKind.search, RUN_SEARCH, body, idempotency_key)


async def accept_generate(
    caller: Caller, body: GenerateRequest, idempotency_key: str | None
) -> Job:
    settings = caller.state.settings
    if not settings.gemini_api_key:
        raise CodedError(
            E.generator_not_configured,
            "no Gemini API key: set ASSETRAG_GEMINI_API_KEY (or GEMINI_API_KEY)",
        )
    kits = await run_in_threadpool(resolve_kits, caller, body)
    body = pin_kits(body, kits)
    wanted = check_generations(body, settings, kits)
    for collection in wanted.collections:
        await load_collection(caller, collection)
    for collection, asset_ids in wanted.assets.items():
        await run_in_threadpool(require_assets, caller.vectors, collection, asset_ids)
    if wanted.uploads:
        await run_in_threadpool(require_uploads, caller, wanted.uploads)
    for url in wanted.urls:
        await run_in_threadpool(check_url, url, settings.allow_private_urls)
    return await enqueue(caller, JobKind.generate, RUN_GENERATE, body, idempotency_key)


@dataclass
class Wanted:
    """What a generate request's sources name, to look up before the job is written."""

    collections: list[str] = field(default_factory=list)
    assets: dict[str, list[str]] = field(default_factory=dict)  # collection → asset ids
    uploads: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def add(self, source: ReferenceSource, default: str) -> None:
        collection = source.collection or default
        if source.upload_id is not None:
            _once(self.uploads, source.upload_id)
        elif source.url is not None:
            _once(self.urls, str(source.url))
        else:
            _once(self.collections, collection)
            for asset_id in source.asset_ids or []:
                _once(self.assets.setdefault(collection, []), asset_id)


def _once(values: list[str], value: str) -> None:
    if value not in values:
        values.append(value)


def resolve_kits(caller: Caller, body: GenerateRequest) -> dict[str, Kit]:
    """Each kit named, by the ref given (404 for one that is not the caller's)."""
    refs = {item.kit for item in body.generations() if item.kit is not None}
    return {ref: caller.state.kits.get(caller.tenant, ref) for ref in sorted(refs)}


def pin_kits(body: GenerateRequest, kits: dict[str, Kit]) -> GenerateRequest:
    """The request as the job keeps it: each kit named at the version it is now (`name@N`),
    so a later PUT does not change a job already submitted."""
    if not kits:
        return body
    items = None
    if body.items is not None:
        items = [
            item.model_copy(update={"kit": kits[item.kit].ref}) if item.kit else item
            for item in body.items
        ]
    kit = kits[body.kit].ref if body.kit else None
    return body.model_copy(update={"kit": kit, "items": items})


def check_generations(
    body: GenerateRequest, settings: Settings, kits: dict[str, Kit] | None = None
) -> Wanted:
    """Each generation's prompt, sources, kit and options against this server's limits and
    the model's; returns what the sources (and kits) name, each once."""
    kits = {kit.ref: kit for kit in (kits or {}).values()}
    generations = body.generations()
    check_item_count(len(generations), settings.max_generate_items)
    wanted = Wanted()
    if body.save_to_collection or any(s.save for item in generations for s in item.sources):
        wanted.collections.append(body.collection)
    for index, item in enumerate(generations):
        where = f"item {index}" if body.bulk else ""
        check_text(
            item.prompt, settings.max_prompt_chars, E.prompt_too_long, f"{where} prompt".strip()
        )
        for source in item.sources:
            check_query(source.query, settings)
            wanted.add(source, body.collection)
        kit = kits.get(item.kit) if item.kit else None
        if kit is not None:
            wanted.add(ReferenceSource(asset_ids=kit.references, collection=kit.collection), "")
        check_sources(settings.gemini_model, item, body.mode == "batch", where, kit)
        for ratio in item.formats:
            check_generation(settings.gemini_model, ratio, item.image_size, where)
    return wanted


async def accept_brand_check(
    caller: Caller, body: BrandCheckRequest, idempotency_key: str | None
) -> Job:
    await load_collection(caller, body.collection)
    kit = await run_in_threadpool(caller.state.kits.get, caller.tenant, body.kit)
    pinned = body.model_copy(update={"kit": kit.ref})  # a later PUT changes no job
    return await enqueue(caller, JobKind.brand_check, PLAN_BRAND_CHECK, pinned, idempotency_key)


async def accept_duplicates(
    caller: Caller, body: DuplicatesRequest, idempotency_key: str | None
) -> Job:
    await load_collection(caller, body.collection)
    return await enqueue(caller, JobKind.duplicates, PLAN_DUPLICATES, body, idempotency_key)


async def accept_reindex(
    caller: Caller, name: str, body: ReindexRequest, idempotency_key: str | None
) -> Job:
    check_model_allowed(body.model, caller.state.settings.allowed_models)
    await load_collection(caller, name)
    await run_in_threadpool(require_no_reindex, caller, name)
    job_body = ReindexJob(collection=name, **body.model_dump(exclude_none=True))
    return await enqueue(caller, JobKind.reindex, PLAN_REINDEX, job_body, idempotency_key)


# ── the checks several kinds share ─────────────────────────────────────────────────────────


def check_query(text: str | None, settings: Settings) -> None:
    check_text(text, settings.max_query_chars, E.query_too_long, "query")


def require_assets(vectors: TenantVectors, collection: str, asset_ids: list[str]) -> None:
    found = vectors.get_vectors(collection, asset_ids)
    missing = [a for a in asset_ids if a not in found]
    if missing:
        raise NotFound(E.asset_not_found, f"not in {collection}: {', '.join(missing)}")


def require_keyword_search(vectors: TenantVectors, collection: str) -> None:
    """Asks Milvus again before refusing: a re-index may have just added keyword search."""
    vectors.forget(collection)
    info = vectors.find_collection(collection)
    if info is not None and not info.keyword_search:
        raise vectors.keyword_unavailable(collection)


def require_uploads(caller: Caller, upload_ids: list[str]) -> None:
    missing = caller.state.uploads.missing(upload_ids, caller.tenant)
    if missing:
        raise NotFound(E.upload_not_found, f"no such upload: {', '.join(missing)}")


def running_reindex(caller: Caller, name: str) -> ReindexMark | None:
    """The re-index building the collection's next version, if one runs."""
    return caller.state.reindexing.running(caller.vectors.physical(name))


def require_no_reindex(caller: Caller, name: str) -> None:
    running = running_reindex(caller, name)
    if running is not None:
        raise Conflict(
            E.reindex_running,
            f"{name} is being re-indexed into version {running.version} by job "
            f"{running.job_id}; wait for it or cancel it",
        )


async def require_webhook(caller: Caller, url: str) -> None:
    """A webhook needs a secret to sign with and a public address (or an allowed host)."""
    settings = caller.state.settings
    if not settings.webhook_secret:
        raise CodedError(
            E.webhook_not_configured, "webhooks are off here: set ASSETRAG_WEBHOOK_SECRET"
        )
    await run_in_threadpool(check_webhook_url, url, settings.webhook_allow_hosts)


# ── writing the job ─────────────────────────────────────────────────────────────────────────


async def enqueue(
    caller: Caller, kind: JobKind, task: str, body: BaseModel, idempotency_key: str | None
) -> Job:
    """Writes the job record and its first task in one step (once per idempotency key)."""
    request = body.model_dump(mode="json", exclude_none=True)
    if webhook := request.get("webhook"):
        await require_webhook(caller, webhook)
    queue = caller.state.queue
    job, created = await caller.state.jobs.acreate(
        kind, request, caller.tenant, idempotency_key, lambda job_id: queue.message(task, job_id)
    )
    if created:
        JOBS_SUBMITTED.labels(kind=kind.value).inc()
    return job
