"""Submit, poll, list, cancel and follow jobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import JobDep, StateDep, TenantDep, VectorsDep
from api.errors import ApiError
from api.metrics import JOBS_SUBMITTED
from api.state import AppState
from shared.blobs import BlobNotFound, generated_key
from shared.jobs import Job, JobKind, JobState
from shared.schemas import EmbedRequest, GenerateRequest, JobList, SearchRequest
from shared.sources import SourceRejected, resolve_library_path
from shared.tasks import PLAN_EMBED, RUN_GENERATE, RUN_SEARCH
from shared.vectors import CollectionInfo, CollectionNotFound, TenantVectors

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

WaitQuery = Annotated[float | None, Query(ge=0, le=30, description="hold up to S seconds")]
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


async def wait_for(state: AppState, job: Job, wait: float | None) -> Job:
    """Holds until the job finishes or `wait` seconds pass; returns the freshest record."""
    if not wait or job.finished:
        return job
    deadline = time.monotonic() + min(wait, state.settings.max_wait_s)
    async with state.events.watch(job.id) as changed:
        while True:
            fresh = await run_in_threadpool(state.jobs.get, job.id)
            if fresh is None or fresh.finished:
                return fresh or job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return fresh
            await state.events.changed(changed, remaining)


async def submit(
    state: AppState,
    kind: JobKind,
    task: str,
    body: BaseModel,
    tenant: str | None,
    idempotency_key: str | None,
    wait: float | None,
) -> JSONResponse:
    request = body.model_dump(mode="json", exclude_none=True)
    job = _reuse(state, tenant, idempotency_key, request)
    if job is None:
        job = state.jobs.create(kind, request, tenant)
        _remember(state, tenant, idempotency_key, request, job.id)
        state.queue.send(task, job.id)
        JOBS_SUBMITTED.labels(kind=kind.value).inc()
    job = await wait_for(state, job, wait)
    return JSONResponse(job_json(job), status_code=200 if job.finished else 202)


def _idempotency_key(tenant: str | None, key: str) -> str:
    digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
    return f"assetrag:idempotency:{digest}"


def _body_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _reuse(
    state: AppState, tenant: str | None, key: str | None, request: dict[str, Any]
) -> Job | None:
    if not key:
        return None
    raw = state.redis.get(_idempotency_key(tenant, key))
    if raw is None:
        return None
    record = json.loads(raw)
    if record["body"] != _body_hash(request):
        raise ApiError(
            422, "idempotency_key_reused", "this Idempotency-Key was used with another body"
        )
    return state.jobs.get(record["job_id"])


def _remember(
    state: AppState, tenant: str | None, key: str | None, request: dict[str, Any], job_id: str
) -> None:
    if key:
        record = json.dumps({"job_id": job_id, "body": _body_hash(request)})
        state.redis.set(_idempotency_key(tenant, key), record, ex=state.settings.job_ttl_s)


def _find_collection(vectors: TenantVectors, name: str) -> CollectionInfo | None:
    try:
        return vectors.get_collection(name, with_count=False)
    except CollectionNotFound:
        return None


def _require_collection(vectors: TenantVectors, name: str) -> None:
    if _find_collection(vectors, name) is None:
        raise ApiError(404, "collection_not_found", f"no collection {name}")


def _check_text(text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise ApiError(
            422, f"{what}_too_long", f"the {what} is {len(text)} characters; the limit is {limit}"
        )


def _check_assets(vectors: TenantVectors, collection: str, asset_ids: list[str]) -> None:
    found = vectors.get_vectors(collection, asset_ids) if asset_ids else {}
    missing = [a for a in asset_ids if a not in found]
    if missing:
        raise ApiError(404, "asset_not_found", f"not in {collection}: {', '.join(missing)}")


def _check_uploads(state: AppState, upload_ids: list[str], tenant: str | None) -> None:
    missing = state.uploads.missing(upload_ids, tenant)
    if missing:
        raise ApiError(404, "upload_not_found", f"no such upload: {', '.join(missing)}")


@router.post("/embed", status_code=202, response_model=Job)
async def submit_embed(
    body: EmbedRequest,
    state: StateDep,
    tenant: TenantDep,
    vectors: VectorsDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> JSONResponse:
    settings = state.settings
    if len(body.items) > settings.max_items_per_job:
        raise ApiError(
            413,
            "too_many_items",
            f"{len(body.items)} items; the limit is {settings.max_items_per_job}",
        )
    if body.directory is not None:
        try:
            resolve_library_path(body.directory.path, settings.library_roots)
        except SourceRejected as exc:
            raise ApiError(422, exc.code, exc.message) from exc
    existing = _find_collection(vectors, body.collection)
    if existing is not None and existing.model != settings.clip_model:
        raise ApiError(
            409,
            "model_mismatch",
            f"collection {body.collection} holds {existing.model} embeddings; "
            f"this service runs {settings.clip_model}",
        )
    return await submit(state, JobKind.embed, PLAN_EMBED, body, tenant, idempotency_key, wait)


@router.post("/search", status_code=202, response_model=Job)
async def submit_search(
    body: SearchRequest,
    state: StateDep,
    tenant: TenantDep,
    vectors: VectorsDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> JSONResponse:
    _require_collection(vectors, body.collection)
    for query in body.queries:
        if query.text is not None:
            _check_text(query.text, state.settings.max_query_chars, "query")
    _check_uploads(state, [q.upload_id for q in body.queries if q.upload_id], tenant)
    _check_assets(vectors, body.collection, [q.asset_id for q in body.queries if q.asset_id])
    return await submit(state, JobKind.search, RUN_SEARCH, body, tenant, idempotency_key, wait)


@router.post("/generate", status_code=202, response_model=Job)
async def submit_generate(
    body: GenerateRequest,
    state: StateDep,
    tenant: TenantDep,
    vectors: VectorsDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> JSONResponse:
    if not state.settings.gemini_api_key:
        raise ApiError(
            503,
            "generator_not_configured",
            "no Gemini API key: set ASSETRAG_GEMINI_API_KEY (or GEMINI_API_KEY)",
        )
    _check_text(body.prompt, state.settings.max_prompt_chars, "prompt")
    if body.references is not None or body.save_to_collection:
        _require_collection(vectors, body.collection)
    if body.references is not None and body.references.asset_ids:
        _check_assets(vectors, body.collection, body.references.asset_ids)
    if body.references is not None and body.references.query:
        _check_text(body.references.query, state.settings.max_query_chars, "query")
    return await submit(state, JobKind.generate, RUN_GENERATE, body, tenant, idempotency_key, wait)


@router.get("/{job_id}", response_model=Job)
async def read_job(job: JobDep, state: StateDep, wait: WaitQuery = None) -> dict[str, Any]:
    return job_json(await wait_for(state, job, wait))


@router.get("", response_model=JobList)
def list_jobs(
    state: StateDep,
    tenant: TenantDep,
    kind: JobKind | None = None,
    job_state: Annotated[JobState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    try:
        after = float(cursor) if cursor else None
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", "cursor must come from a previous page") from exc
    jobs, next_cursor = state.jobs.list_jobs(kind, job_state, limit, after, tenant)
    return {
        "data": [job_json(j) for j in jobs],
        "count": len(jobs),
        "next_cursor": None if next_cursor is None else repr(next_cursor),
    }


@router.post("/{job_id}/cancel", response_model=Job)
def cancel_job(job: JobDep, state: StateDep) -> dict[str, Any]:
    if not state.jobs.cancel(job.id):
        fresh = state.jobs.get(job.id) or job
        raise ApiError(409, "job_finished", f"job {job.id} already {fresh.state.value}")
    return job_json(state.jobs.get(job.id) or job)


@router.get("/{job_id}/events")
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
            payload = json.dumps(job_json(job))
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


@router.get("/{job_id}/images/{number}", responses={200: {"content": {"image/png": {}}}})
def generated_image(job: JobDep, number: int, state: StateDep) -> Response:
    images = (job.result or {}).get("images", [])
    if not 0 <= number < len(images):
        raise ApiError(404, "image_not_found", f"job {job.id} has no image {number}")
    image = images[number]
    try:
        data = state.blobs.get(generated_key(job.id, number))
    except BlobNotFound as exc:
        raise ApiError(404, "image_not_found", f"job {job.id} image {number} is gone") from exc
    return Response(
        data, media_type=image["mime_type"], headers={"Cache-Control": "private, max-age=86400"}
    )
