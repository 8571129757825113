"""Re-indexing with the workers' plain functions, step by step: real Redis, Milvus Lite, and
two tiny CLIP models of different dimensions (48 and 64)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.contract import JobKind, JobState, ReindexResult, SearchResult
from shared.jobs.store import JobStore
from shared.milvus.reindexing import ReindexMark, ReindexMarks
from shared.settings import Settings
from shared.tasks import PLAN_REINDEX, REINDEX_BATCH, SWAP_REINDEX
from tests.support.images import write_images
from tests.support.inline import HANDLERS, run_embed, run_queued, submit, take
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
