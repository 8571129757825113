"""Batches are tried again while a part is down (ASSETRAG_BATCH_RETRY_S), whatever the job:
a duplicates batch whose range search fails once still counts its assets, and one whose
Milvus stays down fails its job with vector_store_unavailable, not internal_error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import tasks
from shared.contract import DuplicatesResult, JobKind, JobState
from shared.milvus.errors import CollectionNotFound, VectorStoreUnavailable
from shared.settings import Settings
from tests.support.images import write_images
from tests.support.inline import run_embed, submit, take
from workers.context import WorkerContext, build_context
from workers.tasks import GUARDED, HANDLERS, run_guarded


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    # The first wait of the backoff is a second; three seconds allow a retry or two.
    context = build_context(settings.model_copy(update={"batch_retry_s": 3.0}))
    yield context
    context.close()


def test_every_batch_task_is_retried() -> None:
    batches = {name for name in HANDLERS if name.endswith(".batch")}
    assert batches and batches <= set(GUARDED)


def failing_neighbours(ctx: WorkerContext, times: int) -> list[int]:
    """Makes the next `times` range searches fail as a Milvus out of reach would."""
    calls: list[int] = []
    real = ctx.vectors.neighbours

    def neighbours(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise VectorStoreUnavailable("milvus is restarting")
        return real(*args, **kwargs)

    ctx.vectors.neighbours = neighbours  # type: ignore[method-assign]
    return calls


def plan_duplicates(ctx: WorkerContext, library: Path) -> tuple[str, list[list[Any]]]:
    write_images(library / "dupes", 3)
    embedded = ctx.jobs.get(
        run_embed(ctx, {"collection": "dupes", "directory": {"path": str(library / "dupes")}})
    )
    assert embedded is not None and embedded.state == JobState.completed
    job_id = submit(ctx, JobKind.duplicates, {"collection": "dupes"})
    [(name, args)] = take(ctx)
    run_guarded(ctx, name, *args)
    batches = take(ctx)
    assert {name for name, _ in batches} == {tasks.DUPLICATES_BATCH}
    return job_id, [args for _, args in batches]


def test_a_duplicates_batch_that_fails_once_is_tried_again(
    ctx: WorkerContext, library: Path
) -> None:
    job_id, batches = plan_duplicates(ctx, library)
    calls = failing_neighbours(ctx, times=1)
    for args in batches:
        run_guarded(ctx, tasks.DUPLICATES_BATCH, *args)
    assert len(calls) == len(batches) + 1
    for name, args in take(ctx):
        run_guarded(ctx, name, *args)
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed, job
    assert isinstance(job.result, DuplicatesResult) and job.result.scanned == 3
    assert job.progress.model_dump() == {"total": 3, "succeeded": 3, "failed": 0}


def test_a_duplicates_batch_whose_milvus_stays_down_fails_the_job_with_its_code(
    ctx: WorkerContext, library: Path
) -> None:
    job_id, batches = plan_duplicates(ctx, library)
    failing_neighbours(ctx, times=1_000)
    run_guarded(ctx, tasks.DUPLICATES_BATCH, *batches[0])
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.failed
    assert job.error is not None and job.error.code == "vector_store_unavailable"


def test_a_coded_error_that_is_no_outage_fails_at_once(ctx: WorkerContext, library: Path) -> None:
    """A collection dropped mid-job is an answer: no retries, the job fails with its code."""
    job_id, batches = plan_duplicates(ctx, library)
    calls: list[int] = []

    def gone(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise CollectionNotFound("dupes")

    ctx.vectors.neighbours = gone  # type: ignore[method-assign]
    run_guarded(ctx, tasks.DUPLICATES_BATCH, *batches[0])
    job = ctx.jobs.get(job_id)
    assert len(calls) == 1
    assert job is not None and job.state == JobState.failed
    assert job.error is not None and job.error.code == "collection_not_found"
