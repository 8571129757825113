"""Submit, poll, list, cancel and follow jobs (duplicates jobs have their own router beside
this one). A submit's checks live in api/submit.py; a handler here names the request model
and the caller, and answers with the job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep, JobDep, StateDep
from api.errors import responses
from api.long_poll import WaitQuery, answer, job_response, wait_for
from api.paths import JOB_ID, relative
from api.state import AppState
from api.submit import (
    IdempotencyHeader,
    accept_brand_check,
    accept_embed,
    accept_generate,
    accept_search,
    submit_responses,
)
from shared import contract
from shared.blobs import BlobNotFound, generated_key
from shared.contract import (
    BrandCheckRequest,
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

router = APIRouter(prefix=contract.JOBS_PATH, tags=["jobs"])
E = ErrorCode


# ── submitting ──────────────────────────────────────────────────────────────────────────────


@router.post(
    relative(router, contract.submit_path(JobKind.embed)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(
        E.too_many_items, E.paths_disabled, E.path_outside_roots, E.file_not_found
    ),
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
    relative(router, contract.submit_path(JobKind.search)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(
        E.query_too_long,
        E.collection_not_found,
        E.keyword_search_unavailable,
        E.upload_not_found,
        E.asset_not_found,
    ),
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
    relative(router, contract.submit_path(JobKind.generate)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(
        E.generator_not_configured,
        E.too_many_items,
        E.option_not_supported,
        E.prompt_too_long,
        E.query_too_long,
        E.collection_not_found,
        E.asset_not_found,
        E.upload_not_found,
        E.invalid_references,
        E.kit_not_found,
    ),
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


@router.post(
    relative(router, contract.submit_path(JobKind.brand_check)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(E.collection_not_found, E.kit_not_found),
)
async def submit_brand_check(
    body: BrandCheckRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Scores every asset of a collection (or those `filter` picks) against a brand kit:
    likeness to the kit's references and distance from its palette. The results file has a
    line per asset; the result lists the worst first."""
    job = await accept_brand_check(caller, body, idempotency_key)
    return await answer(caller.state, job, wait)


# ── reading and following ───────────────────────────────────────────────────────────────────


@router.get(
    relative(router, contract.job_path(JOB_ID)),
    response_model=Job,
    responses=responses(E.job_not_found),
)
async def read_job(job: JobDep, state: StateDep, wait: WaitQuery = None) -> Response:
    """The job in full; `wait` holds the answer until it finishes."""
    return job_response(await wait_for(state, job, wait))


@router.get(
    relative(router, contract.JOBS_PATH),
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
    relative(router, contract.cancel_path(JOB_ID)),
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
    relative(router, contract.events_path(JOB_ID)),
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
    relative(router, contract.results_path(JOB_ID)),
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
    relative(router, contract.images_path(JOB_ID)) + "/{number}",
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
