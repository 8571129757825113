"""Re-indexing with the workers' plain functions, step by step: real Redis, Milvus Lite, and
two tiny CLIP models of different dimensions (48 and 64)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared import keys
from shared.contract import JobKind, JobState, ReindexResult, SearchResult
from shared.jobs.store import JobStore
from shared.milvus.reindexing import ReindexMark, ReindexMarks
from shared.settings import Settings
from shared.tasks import PLAN_REINDEX, REINDEX_BATCH, SWAP_REINDEX
from tests.support.images import write_images
from tests.support.inline import HANDLERS, run_embed, run_queued, submit, take
from workers import reindex
from workers.background import run_round
from workers.context import WorkerContext, build_context
from workers.encoders import EncoderCache


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings)
    yield context
    context.vectors.close()


def embed_dir(ctx: WorkerContext, library: Path, name: str, count: int, start: int = 0) -> None:
    write_images(library / name, count, start=start)
    job_id = run_embed(ctx, {"collection": "lib", "directory": {"path": str(library / name)}})
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed


def search_asset(ctx: WorkerContext, asset_id: str) -> list[str]:
    job_id = submit(ctx, JobKind.search, {"collection": "lib", "queries": [{"asset_id": asset_id}]})
    run_queued(ctx)
    job = ctx.jobs.get(job_id)
    assert job is not None and isinstance(job.result, SearchResult), job
    return [hit.asset_id for hit in job.result.results[0]]


def test_reindex_to_another_model_while_writes_go_on(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "first", 12)  # two re-index batches of 8
    scope = ctx.scoped(None)
    old_ids = scope.asset_ids("lib")
    assert len(old_ids) == 12

    job_id = submit(ctx, JobKind.reindex, {"collection": "lib", "model": str(other_clip)})
    [(name, args)] = take(ctx)
    assert name == PLAN_REINDEX
    HANDLERS[name](ctx, *args)
    batches = take(ctx)
    assert [n for n, _ in batches] == [REINDEX_BATCH, REINDEX_BATCH]
    HANDLERS[REINDEX_BATCH](ctx, *batches[0][1])

    # mid-way: searches answer from version 1; new images are written to both versions
    assert ctx.vectors.get_collection("lib").version == 1
    assert search_asset(ctx, old_ids[0])[0] == old_ids[0]
    embed_dir(ctx, library, "during", 2, start=100)
    assert scope.count("lib", 1) == 14 and scope.count("lib", 2) == 8 + 2
    # a write that raced the mark (version 1 only) is caught up before the swap
    [raced] = scope.get_assets("lib", [old_ids[0]], 1, with_vector=True)
    raced = raced.model_copy(update={"asset_id": "f" * 64})
    scope.upsert("lib", [raced], version=1)

    HANDLERS[REINDEX_BATCH](ctx, *batches[1][1])
    [(name, args)] = take(ctx)
    assert name == SWAP_REINDEX
    HANDLERS[name](ctx, *args)

    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed, job
    assert job.progress.model_dump() == {"total": 12, "succeeded": 12, "failed": 0}
    assert isinstance(job.result, ReindexResult)
    assert (job.result.version, job.result.from_version, job.result.dimension) == (2, 1, 64)
    assert job.result.swapped and not job.result.previous_dropped

    info = ctx.vectors.get_collection("lib")
    assert (info.version, info.dimension, info.model) == (2, 64, str(other_clip))
    assert info.count == 15 == scope.count("lib", 1)
    assert [(v.version, v.dimension, v.current) for v in scope.versions("lib")] == [
        (1, 48, False),
        (2, 64, True),
    ]
    # searches now encode with the new model and find an image itself first
    assert search_asset(ctx, old_ids[5])[0] == old_ids[5]
    # right after the swap, writers still write the replaced version too (grace period)
    mark = ctx.reindexing.for_writers(scope.physical("lib"))
    assert mark is not None and mark.swapped and ctx.reindexing.running("lib") is None


def test_reindex_with_the_same_model_copies_vectors_and_drops_the_previous(
    ctx: WorkerContext, library: Path, settings: Settings
) -> None:
    embed_dir(ctx, library, "same", 5)
    scope = ctx.scoped(None)
    before = scope.get_vectors("lib", scope.asset_ids("lib"))
    job_id = submit(
        ctx,
        JobKind.reindex,
        {"collection": "lib", "model": settings.clip_model, "drop_previous": True},
    )
    run_queued(ctx)
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed, job
    assert isinstance(job.result, ReindexResult) and job.result.previous_dropped
    assert [v.version for v in scope.versions("lib")] == [2]
    assert scope.get_vectors("lib", list(before)) == before


def test_a_missing_original_is_an_item_error_and_the_rest_swap(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "gone", 3)
    scope = ctx.scoped(None)
    [first, *_] = scope.get_assets("lib", scope.asset_ids("lib"))
    ctx.blobs.delete(first.content_key)
    job_id = submit(ctx, JobKind.reindex, {"collection": "lib", "model": str(other_clip)})
    run_queued(ctx)
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed, job
    assert job.progress.model_dump() == {"total": 3, "succeeded": 2, "failed": 1}
    [error] = job.errors
    assert error.code == "content_not_found" and first.asset_id in error.message
    assert ctx.vectors.get_collection("lib").count == 2


def start_reindex(ctx: WorkerContext, model: Path) -> tuple[str, list[tuple[str, list]]]:
    """A re-index of `lib` planned and its first batch run; returns the job and the other
    batches' messages, taken off the queue."""
    job_id = submit(ctx, JobKind.reindex, {"collection": "lib", "model": str(model)})
    [(name, args)] = take(ctx)
    HANDLERS[name](ctx, *args)
    first, *rest = take(ctx)
    HANDLERS[REINDEX_BATCH](ctx, *first[1])
    scope = ctx.scoped(None)
    assert [v.version for v in scope.versions("lib")] == [1, 2]
    assert ctx.reindexing.running("lib") is not None
    return job_id, rest


def assert_cleaned(ctx: WorkerContext, old_ids: list[str]) -> None:
    """Version 1 alone, answering searches; no mark left, so writers write version 1 only."""
    scope = ctx.scoped(None)
    assert [(v.version, v.current) for v in scope.versions("lib")] == [(1, True)]
    assert not ctx.redis.exists(keys.reindex("lib"))
    assert ctx.reindexing.for_writers("lib") is None
    assert search_asset(ctx, old_ids[3])[0] == old_ids[3]


def test_a_reindex_whose_batch_the_watchdog_abandons_drops_its_version(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "lost", 12)
    old_ids = ctx.scoped(None).asset_ids("lib")
    ctx.settings = ctx.settings.model_copy(update={"work_quiet_s": 0.0, "work_attempts": 1})
    job_id, _ = start_reindex(ctx, other_clip)  # the second batch's message is lost
    assert search_asset(ctx, old_ids[0])[0] == old_ids[0], "version 1 answers mid-way"

    first = run_round(ctx, restore=lambda tag: None)
    assert first.resent == [(job_id, "b1")] and not first.reindexes_cleaned
    take(ctx)  # lost again: the watchdog gives up on it, the job fails, its version goes
    second = run_round(ctx, restore=lambda tag: None)
    assert second.abandoned == [(job_id, "b1", "work_lost")]
    assert second.reindexes_cleaned == [job_id]
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.failed, job
    assert_cleaned(ctx, old_ids)
    assert not run_round(ctx, restore=lambda tag: None), "nothing left to clean"

    # the collection can be re-indexed again, into a version 2 of its own
    again = submit(ctx, JobKind.reindex, {"collection": "lib", "model": str(other_clip)})
    run_queued(ctx)
    job = ctx.jobs.get(again)
    assert job is not None and job.state == JobState.completed, job
    assert ctx.vectors.get_collection("lib").count == 12
    assert [(v.version, v.current) for v in ctx.scoped(None).versions("lib")] == [
        (1, False),
        (2, True),
    ]


def test_a_cancelled_reindex_drops_its_version(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "cancel", 12)
    old_ids = ctx.scoped(None).asset_ids("lib")
    job_id, rest = start_reindex(ctx, other_clip)
    assert ctx.jobs.cancel(job_id) == JobState.cancelled  # the API's cancel: b1 not started
    [(name, args)] = rest
    HANDLERS[name](ctx, *args)  # its message still arrives, and finds the job ended
    assert ctx.jobs.state(job_id) == JobState.cancelled
    assert_cleaned(ctx, old_ids)
    embed_dir(ctx, library, "after", 2, start=200)
    assert ctx.scoped(None).count("lib", 1) == 14


def test_a_reindex_cancelled_while_a_batch_runs_ends_when_it_does_and_drops_its_version(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "running", 12)
    old_ids = ctx.scoped(None).asset_ids("lib")
    job_id, [(_, args)] = start_reindex(ctx, other_clip)
    assert ctx.jobs.start_work(job_id, "b1", "elsewhere")  # b1 runs on another worker
    assert ctx.jobs.cancel(job_id) == JobState.cancelling
    HANDLERS[REINDEX_BATCH](ctx, *args)  # b1's redelivery: dropped, and the job ends
    assert ctx.jobs.state(job_id) == JobState.cancelled
    assert_cleaned(ctx, old_ids)


def test_a_reindex_failed_at_the_swap_drops_its_version(
    ctx: WorkerContext, library: Path, other_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embed_dir(ctx, library, "swap", 12)
    old_ids = ctx.scoped(None).asset_ids("lib")
    job_id, rest = start_reindex(ctx, other_clip)
    HANDLERS[REINDEX_BATCH](ctx, *rest[0][1])
    [(name, args)] = take(ctx)
    assert name == SWAP_REINDEX

    def broken(*_: object) -> None:
        raise RuntimeError("Milvus went away mid catch-up")

    monkeypatch.setattr(reindex, "catch_up", broken)
    reindex.swap_or_fail(ctx, *args)  # as the worker runs the swap
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.failed, job
    assert job.error is not None and "mid catch-up" in job.error.message
    assert_cleaned(ctx, old_ids)


def test_a_mark_left_by_an_expired_record_is_swept(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "expired", 12)
    old_ids = ctx.scoped(None).asset_ids("lib")
    job_id, _ = start_reindex(ctx, other_clip)
    ctx.redis.delete(*keys.job_parts(job_id))  # its record expired while its mark stood
    assert reindex.sweep(ctx) == [job_id]
    assert_cleaned(ctx, old_ids)


def test_a_version_the_alias_moved_to_is_kept_when_its_job_ends(
    ctx: WorkerContext, library: Path, other_clip: Path
) -> None:
    embed_dir(ctx, library, "moved", 12)
    job_id, rest = start_reindex(ctx, other_clip)
    HANDLERS[REINDEX_BATCH](ctx, *rest[0][1])
    ctx.scoped(None).swap("lib", 2)  # the swap moved the alias, then its worker died
    ctx.jobs.fail(job_id, "work_lost", "the swap's task was lost")
    assert reindex.sweep(ctx) == []
    assert [(v.version, v.current) for v in ctx.scoped(None).versions("lib")] == [
        (1, False),
        (2, True),
    ]
    mark = ctx.reindexing.for_writers("lib")
    assert mark is not None and mark.swapped, "whole, so kept: writers write both a while"


def test_marks_let_one_reindex_build_a_collection(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, 3600)
    marks = ReindexMarks(redis_client, jobs)
    first, _ = jobs.create(JobKind.reindex, {"collection": "c", "model": "m"}, None)
    second, _ = jobs.create(JobKind.reindex, {"collection": "c", "model": "m"}, None)
    mark = ReindexMark(job_id=first.id, model="m", version=2, from_version=1)
    assert marks.begin("c", mark) == mark
    other = mark.model_copy(update={"job_id": second.id})
    assert marks.begin("c", other).job_id == first.id  # the first holds
    assert marks.running("c") == mark
    marks.end("c", second.id)  # not its mark: nothing changes
    assert marks.running("c") == mark
    jobs.fail(first.id, "internal_error", "boom")
    # a mark whose job ended without a swap counts for nothing
    assert marks.running("c") is None and marks.for_writers("c") is None
    assert marks.begin("c", other).job_id == second.id


def test_encoder_cache_loads_once_and_keeps_the_recent_ones() -> None:
    loads: list[str] = []

    def load(model: str) -> object:
        loads.append(model)
        return object()

    cache = EncoderCache(2, load)  # type: ignore[arg-type]
    a = cache.get("a")
    assert cache.get("a") is a
    cache.get("b")
    cache.get("a")  # a is the most recent now
    cache.get("c")  # b goes
    assert cache.loaded() == ["a", "c"] and loads == ["a", "b", "c"]
    cache.get("b")
    assert loads == ["a", "b", "c", "b"]
