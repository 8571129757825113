"""The workers' plain functions without Celery: real Redis, Milvus Lite and the tiny CLIP model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from shared import keys
from shared.contract import JobKind, JobState, SearchResult
from shared.settings import Settings
from shared.sources import StoredUpload
from shared.tasks import EMBED_BATCH, PLAN_EMBED
from tests.support.http import serve_http
from tests.support.images import make_image, write_images
from tests.support.inline import run_embed, run_queued, submit, take
from workers.context import WorkerContext, build_context
from workers.embed import embed_batch, plan_embed
from workers.search import run_search

# The text goes through the shared text batch; all three vectors through one Milvus call.
SEARCH_STAGES = ("claim", "target", "encode_wait", "encode", "milvus_wait", "milvus", "record")


def stage_count(stage: str) -> float:
    value = REGISTRY.get_sample_value("assetrag_search_stage_seconds_count", {"stage": stage})
    return value or 0.0


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings)
    yield context
    context.vectors.close()


def add_upload(ctx: WorkerContext, data: bytes, name: str, tenant: str | None = None) -> str:
    upload = StoredUpload(
        upload_id=f"upload-{name}-0000000000",
        filename=name,
        bytes=len(data),
        sha256="0" * 64,
        content_type="image/png",
        tenant=tenant,
    )
    ctx.uploads.add(upload, data)
    return upload.upload_id


@pytest.fixture
def image_server() -> Iterator[str]:
    body = make_image(77)
    with serve_http(lambda _path: (200, {}, body)) as url:
        yield f"{url}/pics/shot.png"


def test_plan_splits_into_batches_and_the_last_batch_completes(
    ctx: WorkerContext, library: Path
) -> None:
    write_images(library / "set", 20)
    job_id = submit(
        ctx, JobKind.embed, {"collection": "unit", "directory": {"path": str(library / "set")}}
    )
    ran = run_queued(ctx)
    assert [name for name, _ in ran] == [PLAN_EMBED] + [EMBED_BATCH] * 3  # batches of 8
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed
    assert job.progress.model_dump() == {"total": 20, "succeeded": 20, "failed": 0}
    assert ctx.vectors.count("unit") == 20
    info = ctx.vectors.get_collection("unit")
    assert info.dimension == 48 and info.model == ctx.settings.clip_model


def test_a_redelivered_batch_is_stored_and_counted_once(ctx: WorkerContext, library: Path) -> None:
    write_images(library / "dup", 16)
    job_id = submit(
        ctx, JobKind.embed, {"collection": "dup", "directory": {"path": str(library / "dup")}}
    )
    [(_, plan)] = take(ctx)
    plan_embed(ctx, *plan)
    first, second = (args for _, args in take(ctx))
    # the first batch's worker stores it and dies before the ack; its task is delivered again
    # while a second worker still runs it: both store, the job counts it once
    embed_batch(ctx, *first)
    ctx.jobs.redis.hset(
        keys.job_work(job_id), first[1], '{"queue":"embed","payload":"","task_id":"t"}'
    )
    embed_batch(ctx, *first)
    embed_batch(ctx, *second)
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed and job.progress.succeeded == 16
    assert ctx.vectors.count("dup") == 16
    assert embed_batch(ctx, *second) is None, "a counted batch delivered again is dropped"


def test_cancelled_jobs_drop_their_queued_batches(ctx: WorkerContext, library: Path) -> None:
    write_images(library / "c", 16)
    job_id = submit(
        ctx, JobKind.embed, {"collection": "cancel", "directory": {"path": str(library / "c")}}
    )
    [(_, plan)] = take(ctx)
    plan_embed(ctx, *plan)
    assert ctx.jobs.cancel(job_id) == JobState.cancelled, "no batch had started"
    for _, args in take(ctx):
        assert embed_batch(ctx, *args) is None
    assert "cancel" not in [c.name for c in ctx.vectors.list_collections()]


def test_url_items_are_fetched_when_allowed(ctx: WorkerContext, image_server: str) -> None:
    ctx.settings = ctx.settings.model_copy(update={"allow_private_urls": True})
    job_id = run_embed(ctx, {"collection": "urls", "items": [{"url": image_server}]})
    job = ctx.jobs.get(job_id)
    assert job is not None and job.progress.succeeded == 1, job
    [asset_id] = job.result.asset_ids  # type: ignore[union-attr]
    record = ctx.vectors.get_asset("urls", asset_id)
    assert record is not None and record.filename == "shot.png" and record.source == image_server


def test_search_text_image_and_asset_queries(ctx: WorkerContext) -> None:
    ids = [add_upload(ctx, make_image(i), f"u{i}") for i in range(6)]
    items = [{"upload_id": u, "metadata": {"i": n}} for n, u in enumerate(ids)]
    embed_job = ctx.jobs.get(run_embed(ctx, {"collection": "s", "items": items}))
    assert embed_job is not None
    assets = embed_job.result.asset_ids  # type: ignore[union-attr]
    request = {
        "collection": "s",
        "top_k": 3,
        "queries": [{"text": "a product photo"}, {"upload_id": ids[2]}, {"asset_id": assets[4]}],
    }
    job_id = submit(ctx, JobKind.search, request)
    [(_, args)] = take(ctx)
    before = {stage: stage_count(stage) for stage in SEARCH_STAGES}
    run_search(ctx, *args)
    # the path of one search, as /metrics tells it (bench/search_latency.py --profile)
    assert {stage: stage_count(stage) - before[stage] for stage in SEARCH_STAGES} == {
        stage: 1.0 for stage in SEARCH_STAGES
    }
    done = ctx.jobs.get(job_id)
    assert done is not None and done.state == JobState.completed
    assert isinstance(done.result, SearchResult)
    text_hits, image_hits, asset_hits = done.result.results
    assert len(text_hits) == 3
    assert image_hits[0].asset_id == assets[2] and asset_hits[0].asset_id == assets[4]
    assert image_hits[0].content_url == f"/v1/collections/s/assets/{assets[2]}/content"
    assert done.progress.model_dump() == {"total": 3, "succeeded": 3, "failed": 0}


def test_a_tenants_job_writes_only_to_its_own_collections(ctx: WorkerContext) -> None:
    upload_id = add_upload(ctx, make_image(5), "t", tenant="alpha")
    job_id = run_embed(
        ctx, {"collection": "shared", "items": [{"upload_id": upload_id}]}, tenant="alpha"
    )
    done = ctx.jobs.get(job_id)
    assert done is not None and done.progress.succeeded == 1, done
    assert ctx.vectors.has_collection("t_alpha__shared")
    assert ctx.scoped("alpha").has_collection("shared")
    assert not ctx.scoped("beta").has_collection("shared")
    assert not ctx.scoped(None).has_collection("shared")
