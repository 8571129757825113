"""A finished job's results file: one JSON line per item (`index`, `status`, `result` or
`error`), the way OpenAI's Batch API gives its output file, for every job kind.

Items are what the job was asked for: an embed job's items (its folder's files included),
a search job's queries, a generate job's items (a single prompt is one item); a duplicates
or re-index job is one item. An item with no outcome of its own takes the job's: `cancelled`
in a cancelled job, else the job's error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from shared.contract import (
    EmbedResult,
    ErrorCode,
    ErrorInfo,
    GeneratedItem,
    GenerateRequest,
    Job,
    JobKind,
    JobState,
    ResultLine,
    SearchResult,
)
from shared.jobs.store import JobStore


def result_lines(jobs: JobStore, job: Job) -> Iterator[ResultLine]:
    if job.kind == JobKind.embed:
        yield from _embed_lines(jobs, job)
    elif job.kind == JobKind.search:
        yield from _search_lines(jobs, job)
    elif job.kind == JobKind.generate:
        yield from _generate_lines(jobs, job)
    elif job.kind == JobKind.brand_check:
        yield from _scored_lines(jobs, job)
    else:
        yield _whole(job, 0, job.result.model_dump(mode="json") if job.result else None)


def _job_outcome(job: Job, index: int) -> ResultLine:
    """An item that has no outcome of its own."""
    if job.state == JobState.cancelled:
        return ResultLine(index=index, status="cancelled")
    error = job.error or ErrorInfo(
        code=ErrorCode.work_lost, message="the item ended without a result"
    )
    return ResultLine(index=index, status="failed", error=error)


def _whole(job: Job, index: int, result: Any) -> ResultLine:
    if job.state == JobState.completed:
        return ResultLine(index=index, status="succeeded", result=result)
    return _job_outcome(job, index)


def _first_errors(jobs: JobStore, job_id: str) -> dict[int, ErrorInfo]:
    errors: dict[int, ErrorInfo] = {}
    for error in jobs.all_errors(job_id):
        errors.setdefault(error.index, ErrorInfo(code=error.code, message=error.message))
    return errors


def _embed_lines(jobs: JobStore, job: Job) -> Iterator[ResultLine]:
    total = job.progress.total
    if total == 0 and job.state != JobState.completed:
        yield _job_outcome(job, 0)
        return
    assets = jobs.all_asset_ids(job.id)
    errors = _first_errors(jobs, job.id)
    collection = job.result.collection if isinstance(job.result, EmbedResult) else None
    for index in range(total):
        if index in assets:
            result = {"asset_id": assets[index], "collection": collection}
            yield ResultLine(index=index, status="succeeded", result=result)
        elif index in errors:
            yield ResultLine(index=index, status="failed", error=errors[index])
        else:
            yield _job_outcome(job, index)


def _search_lines(jobs: JobStore, job: Job) -> Iterator[ResultLine]:
    if isinstance(job.result, SearchResult) and job.state == JobState.completed:
        for index, hits in enumerate(job.result.results):
            result = {"hits": [hit.model_dump(mode="json") for hit in hits]}
            yield ResultLine(index=index, status="succeeded", result=result)
        return
    queries = jobs.request(job.id).get("queries") or [None]
    for index in range(len(queries)):
        yield _job_outcome(job, index)


def _generate_lines(jobs: JobStore, job: Job) -> Iterator[ResultLine]:
    request = GenerateRequest.model_validate(jobs.request(job.id))
    if not request.bulk:
        result = job.result.model_dump(mode="json") if job.result else None
        yield _whole(job, 0, result)
        return
    items = {
        index: result
        for index, raw in jobs.claims.all_recorded(job.id).items()
        if (result := json.loads(raw).get("result")) is not None
    }
    errors = _first_errors(jobs, job.id)
    for index in range(len(request.generations())):
        if index in items:
            item = GeneratedItem.model_validate(items[index]).model_dump(mode="json")
            yield ResultLine(index=index, status="succeeded", result=item)
        elif index in errors:
            yield ResultLine(index=index, status="failed", error=errors[index])
        else:
            yield _job_outcome(job, index)


def _scored_lines(jobs: JobStore, job: Job) -> Iterator[ResultLine]:
    """A brand check's: one line per asset checked, in id order, with both scores."""
    scored = {i: json.loads(raw)["result"] for i, raw in jobs.claims.all_recorded(job.id).items()}
    errors = _first_errors(jobs, job.id)
    for index in range(job.progress.total):
        if index in scored:
            yield ResultLine(index=index, status="succeeded", result=scored[index])
        elif index in errors:
            yield ResultLine(index=index, status="failed", error=errors[index])
        else:
            yield _job_outcome(job, index)
