"""Submit, poll, list, cancel and follow jobs.

Submits never block the event loop: they validate and check on it (pydantic, rules, what this
process read of a collection lately), write the job with the asyncio Redis client, and send
any other Milvus, Redis or disk call to the thread pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, CallerDep, JobDep, StateDep
from api.errors import responses
from api.metrics import JOBS_SUBMITTED
from api.state import AppState
from shared import contract
from shared.blobs import BlobNotFound, generated_key
from shared.contract import (
    TERMINAL_STATES,
    EmbedRequest,
    ErrorCode,
    GenerateRequest,
    Job,
    JobKind,
    JobState,
    JobSummary,
    Page,
    SearchRequest,
)
from shared.errors import CodedError, Conflict, NotFound
from shared.jobs.results import result_lines
from shared.milvus.tenants import TenantVectors
from shared.rules import check_generation, check_item_count, check_text, check_webhook_url
from shared.sources import resolve_library_path
from shared.tasks import PLAN_EMBED, RUN_GENERATE, RUN_SEARCH

router = APIRouter(tags=["jobs"])
E = ErrorCode

WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=contract.MAX_WAIT_S, description="hold the answer up to S seconds"),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, description="one job per key"),
]
# What any submit carrying a webhook can be refused with.
WEBHOOK_ERRORS = (
    E.webhook_not_configured,
    E.forbidden_address,
    E.unresolvable_host,
    E.unsupported_url,
)
FINISHED_IN_TIME: dict[int | str, dict[str, Any]] = {
    200: {"model": Job, "description": "the job finished within `wait`"}
}


# ── submitting ──────────────────────────────────────────────────────────────────────────────


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


def job_response(job: Job, status: int = 200) -> Response:
    # pydantic's own serializer, several times faster than model_dump + json.dumps
    return Response(job.model_dump_json(), status_code=status, media_type="application/json")


async def answer(state: AppState, job: Job, wait: float | None) -> Response:
    job = await wait_for(state, job, wait)
    return job_response(job, 200 if job.finished else 202)


async def wait_for(state: AppState, job: Job, wait: float | None) -> Job:
    """Holds until the job finishes or `wait` seconds pass; returns the freshest record."""
    if not wait or job.finished:
        return job
    deadline = time.monotonic() + min(wait, state.settings.max_wait_s)
    async with state.events.watch(job.id) as changed:
        fresh = await run_in_threadpool(state.jobs.get, job.id)
        while fresh is not None and not fresh.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return fresh
            published = await state.events.changed(changed, remaining)
            # "running" or "progress" cannot end the wait: read again only for an end, or
            # when the recheck is due (a message may have been lost)
            if not published or any(p in TERMINAL_STATES for p in published):
                fresh = await run_in_threadpool(state.jobs.get, job.id)
        return fresh or job


async def find_collection(caller: Caller, name: str) -> contract.CollectionInfo | None:
    """From what this process read lately, else from Milvus in the thread pool."""
    info = caller.vectors.cached_collection(name)
    if info is None:
        info = await run_in_threadpool(caller.vectors.find_collection, name)
    return info


async def require_collection(caller: Caller, name: str) -> None:
    if await find_collection(caller, name) is None:
        raise NotFound(E.collection_not_found, f"no collection {name}")


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


async def require_webhook(caller: Caller, url: str) -> None:
    """A webhook needs a secret to sign with and a public address (or an allowed host)."""
    settings = caller.state.settings
    if not settings.webhook_secret:
        raise CodedError(
            E.webhook_not_configured, "webhooks are off here: set ASSETRAG_WEBHOOK_SECRET"
        )
    await run_in_threadpool(check_webhook_url, url, settings.webhook_allow_hosts)


def require_uploads(caller: Caller, upload_ids: list[str]) -> None:
    missing = caller.state.uploads.missing(upload_ids, caller.tenant)
    if missing:
        raise NotFound(E.upload_not_found, f"no such upload: {', '.join(missing)}")


# What a submit checks runs on the event loop where it is computation or a recent read, and
# in the thread pool where it must ask Milvus, Redis or the disk.


async def accept_embed(caller: Caller, body: EmbedRequest, idempotency_key: str | None) -> Job:
    settings = caller.state.settings
    check_item_count(len(body.items), settings.max_items_per_job)
    if body.directory is not None:
        await run_in_threadpool(resolve_library_path, body.directory.path, settings.library_roots)
    return await enqueue(caller, JobKind.embed, PLAN_EMBED, body, idempotency_key)


async def accept_search(caller: Caller, body: SearchRequest, idempotency_key: str | None) -> Job:
    for query in body.queries:
        check_text(query.text, caller.state.settings.max_query_chars, E.query_too_long, "query")
    info = await find_collection(caller, body.collection)
    if info is None:
        raise NotFound(E.collection_not_found, f"no collection {body.collection}")
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
    generations = body.generations()
    check_item_count(len(generations), settings.max_generate_items)
    asset_ids: dict[str, None] = {}
    for index, item in enumerate(generations):
        where = f"item {index}" if body.bulk else ""
        check_text(
            item.prompt, settings.max_prompt_chars, E.prompt_too_long, f"{where} prompt".strip()
        )
        references = item.references
        if references is not None:
            check_text(references.query, settings.max_query_chars, E.query_too_long, "query")
            asset_ids |= dict.fromkeys(references.asset_ids or [])
        check_generation(
            settings.gemini_model,
            references.most if references is not None else 0,
            item.aspect_ratio,
            item.image_size,
            where,
        )
    if body.save_to_collection or any(item.references for item in generations):
        await require_collection(caller, body.collection)
    if asset_ids:
        await run_in_threadpool(require_assets, caller.vectors, body.collection, list(asset_ids))
    return await enqueue(caller, JobKind.generate, RUN_GENERATE, body, idempotency_key)


@router.post(
    contract.submit_path(JobKind.embed),
    status_code=202,
    response_model=Job,
    responses={
        **FINISHED_IN_TIME,
        **responses(
            E.too_many_items,
            E.paths_disabled,
            E.path_outside_roots,
            E.file_not_found,
            *WEBHOOK_ERRORS,
            E.idempotency_key_reused,
            E.malformed_json,
        ),
    },
)
async def submit_embed(
    body: EmbedRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Embed uploads, library paths, URLs and/or a library folder into a collection (made on
    first use)."""
    job = await accept_embed(caller, body, idempotency_key)
    return await answer(caller.state, job, wait)


@router.post(
    contract.submit_path(JobKind.search),
    status_code=202,
    response_model=Job,
    responses={
        **FINISHED_IN_TIME,
        **responses(
            E.query_too_long,
            E.collection_not_found,
            E.keyword_search_unavailable,
            E.upload_not_found,
            E.asset_not_found,
            *WEBHOOK_ERRORS,
            E.idempotency_key_reused,
            E.malformed_json,
        ),
    },
)
async def submit_search(
    body: SearchRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Search a collection by text, an uploaded image or a stored asset; one hit list per
    query, best first."""
    job = await accept_search(caller, body, idempotency_key)
    return await answer(caller.state, job, wait)


@router.post(
    contract.submit_path(JobKind.generate),
    status_code=202,
    response_model=Job,
    responses={
        **FINISHED_IN_TIME,
        **responses(
            E.generator_not_configured,
            E.too_many_items,
            E.option_not_supported,
            *WEBHOOK_ERRORS,
            E.prompt_too_long,
            E.query_too_long,
            E.collection_not_found,
            E.asset_not_found,
            E.idempotency_key_reused,
            E.malformed_json,
        ),
    },
)
async def submit_generate(
    body: GenerateRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Generate images with Gemini from a prompt and reference assets (named, or the hits of
    a text query); or many such generations as `items`, interactively or through Gemini's
    Batch API (`"mode": "batch"`, half the price, within 24 hours)."""
    job = await accept_generate(caller, body, idempotency_key)
    return await answer(caller.state, job, wait)


# ── reading and following ───────────────────────────────────────────────────────────────────


@router.get(
    contract.JOBS_PATH + "/{job_id}",
    response_model=Job,
    responses=responses(E.job_not_found),
)
async def read_job(job: JobDep, state: StateDep, wait: WaitQuery = None) -> Response:
    """The job in full; `wait` holds the answer until it finishes."""
    return job_response(await wait_for(state, job, wait))


@router.get(
    contract.JOBS_PATH,
    response_model=Page[JobSummary],
    responses=responses(),
)
def list_jobs(
    caller: CallerDep,
    kind: JobKind | None = None,
    job_state: Annotated[JobState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=contract.CURSOR_PATTERN, description="from a previous page")
    ] = None,
) -> Page[JobSummary]:
    """Newest first, as summaries (no results or item errors: read a job for those)."""
    after = float(cursor) if cursor else None
    jobs, next_cursor = caller.state.jobs.list_jobs(caller.tenant, kind, job_state, limit, after)
    return Page[JobSummary](
        data=jobs, next_cursor=None if next_cursor is None else repr(next_cursor)
    )


@router.post(
    contract.JOBS_PATH + "/{job_id}/cancel",
    response_model=Job,
    responses=responses(E.job_not_found, E.job_finished),
)
def cancel_job(job: JobDep, state: StateDep) -> Job:
    """Drops work not yet started at once; work already running finishes, and what it stored
    stays. The job is `cancelling` until then, then `cancelled` with its final counts."""
    if state.jobs.cancel(job.id) is None:
        fresh = state.jobs.get(job.id) or job
        raise CodedError(E.job_finished, f"job {job.id} already {fresh.state.value}")
    return state.jobs.get(job.id) or job


@router.get(
    contract.JOBS_PATH + "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "progress events"},
        **responses(E.job_not_found),
    },
)
async def job_events(job: JobDep, state: StateDep) -> StreamingResponse:
    """Server-sent events: one `progress` event per change, then `done` with the final job."""
    return StreamingResponse(
        _event_stream(state, job.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(state: AppState, job_id: str) -> AsyncIterator[str]:
    last = ""
    async with state.events.watch(job_id) as changed:
        while True:
            job = await run_in_threadpool(state.jobs.get, job_id)
            if job is None:
                return
            payload = job.model_dump_json()
            if job.finished:
                yield f"event: done\ndata: {payload}\n\n"
                return
            if payload != last:
                last = payload
                yield f"event: progress\ndata: {payload}\n\n"
            try:
                await state.events.changed(changed, 15.0)
            except asyncio.CancelledError:
                return


@router.get(
    contract.results_path("{job_id}"),
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "one JSON line per item: index, status (succeeded, failed, "
            "cancelled), result or error",
        },
        **responses(E.job_not_found, E.job_not_finished),
    },
)
def job_results(job: JobDep, state: StateDep) -> Response:
    """The finished job's results file: JSON Lines, one line per item, in item order."""
    if not job.finished:
        raise Conflict(
            E.job_not_finished, f"job {job.id} is {job.state.value}; results come at its end"
        )
    body = "".join(
        line.model_dump_json(exclude_none=True) + "\n" for line in result_lines(state.jobs, job)
    )
    return Response(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{job.id}.jsonl"'},
    )


@router.get(
    contract.JOBS_PATH + "/{job_id}/images/{number}",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "a generated image's bytes"},
        **responses(E.job_not_found, E.image_not_found),
    },
)
def generated_image(job: JobDep, number: int, state: StateDep) -> Response:
    images = job.result.images if isinstance(job.result, contract.GenerateResult) else []
    url = contract.job_image_url(job.id, number)
    image = next((image for image in images if image.content_url == url), None)
    if image is None:
        raise NotFound(E.image_not_found, f"job {job.id} has no image {number}")
    try:
        data = state.blobs.get(generated_key(job.id, number))
    except BlobNotFound as exc:
        raise NotFound(E.image_not_found, f"job {job.id} image {number} is gone") from exc
    return Response(
        data,
        media_type=image.mime_type,
        headers={"Cache-Control": "private, max-age=86400"},
    )
