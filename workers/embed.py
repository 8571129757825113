"""Embed jobs: a planning task expands the job into batches; each batch is read → encoded → stored.

Reading (fetch, sniff, decode, preprocess) runs in a thread pool off the model's path; the
model encodes the whole batch at once; Milvus upserts by content-hash id, so a redelivered
batch or a repeated image is stored once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.blobs import asset_key
from shared.images import ImageInfo, ImageRejected, sniff_and_decode
from shared.jobs import FINAL_STATES, ItemError
from shared.schemas import EmbedItem, EmbedRequest
from shared.sources import (
    SourceRejected,
    expand_directory,
    fetch_url,
    read_library_file,
)
from shared.tasks import EMBED_BATCH, PLAN_EMBED
from shared.vectors import AssetRecord, CollectionNotFound, ModelMismatch, TenantVectors
from workers.celery_app import app
from workers.context import ContextTask, WorkerContext

log = logging.getLogger("assetrag.embed")


@dataclass
class LoadedImage:
    index: int
    item: EmbedItem
    filename: str
    data: bytes
    info: ImageInfo
    pixels: Any  # a preprocessed CHW tensor

    @property
    def asset_id(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class BatchReport:
    stored: int = 0
    errors: list[ItemError] = field(default_factory=list)
    asset_ids: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def plan_embed(ctx: WorkerContext, job_id: str) -> int:
    """Expands the request into batches on the embed queue; returns how many were sent."""
    if not ctx.jobs.mark_running(job_id):
        return 0  # cancelled before planning
    request = EmbedRequest.model_validate(ctx.jobs.request(job_id))
    try:
        _check_collection_model(ctx, ctx.scoped(ctx.jobs.tenant(job_id)), request.collection)
        items = _expand(ctx, request)
    except (SourceRejected, ModelMismatch) as exc:
        ctx.jobs.fail(job_id, getattr(exc, "code", "model_mismatch"), str(exc))
        return 0
    size = ctx.settings.embed_batch_size
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    ctx.jobs.set_result(job_id, {"collection": request.collection})
    ctx.jobs.set_plan(job_id, len(items), len(batches))
    if not batches:
        ctx.jobs.complete(job_id, {"collection": request.collection})
    # A redelivered plan sends every batch again; each batch id is counted once.
    for number, batch in enumerate(batches):
        ctx.queue.send(EMBED_BATCH, job_id, str(number), batch)
    return len(batches)


def _check_collection_model(ctx: WorkerContext, vectors: TenantVectors, collection: str) -> None:
    try:
        existing = vectors.get_collection(collection, with_count=False)
    except CollectionNotFound:
        return
    if existing.model != ctx.settings.clip_model:
        raise ModelMismatch(
            f"collection {collection} holds {existing.model} embeddings; "
            f"this service runs {ctx.settings.clip_model}"
        )


def _expand(ctx: WorkerContext, request: EmbedRequest) -> list[dict[str, Any]]:
    items = [item.model_dump(mode="json", exclude_none=True) for item in request.items]
    if request.directory is not None:
        spec = request.directory
        paths = expand_directory(
            spec.path,
            spec.pattern,
            spec.recursive,
            ctx.settings.library_roots,
            ctx.settings.max_items_per_job,
        )
        items += [{"path": str(path), "metadata": {}} for path in paths]
    if len(items) > ctx.settings.max_items_per_job:
        raise SourceRejected(
            "too_many_items", f"{len(items)} items; the limit is {ctx.settings.max_items_per_job}"
        )
    return [{"index": index, **item} for index, item in enumerate(items)]


def embed_batch(
    ctx: WorkerContext, job_id: str, batch_id: str, items: list[dict[str, Any]]
) -> BatchReport | None:
    state = ctx.jobs.state(job_id)
    if state is None or state in FINAL_STATES:
        return None  # cancelled or expired: the queued batch is dropped
    request = ctx.jobs.request(job_id)
    tenant = ctx.jobs.tenant(job_id)
    report = BatchReport()
    started = time.perf_counter()
    loaded = read_batch(ctx, items, tenant, report)
    report.timings["read"] = time.perf_counter() - started
    if loaded:
        store_batch(ctx, ctx.scoped(tenant), request["collection"], loaded, report)
    ctx.jobs.complete_batch(job_id, batch_id, report.stored, report.errors, report.asset_ids)
    log.info(
        "job %s batch %s: %d stored, %d failed, timings %s",
        job_id,
        batch_id,
        report.stored,
        len(report.errors),
        {k: round(v, 3) for k, v in report.timings.items()},
    )
    return report


def read_batch(
    ctx: WorkerContext, items: list[dict[str, Any]], tenant: str | None, report: BatchReport
) -> list[LoadedImage]:
    encoder = ctx.encoder()
    outcomes = ctx.decode_pool.map(lambda raw: load_item(ctx, raw, tenant, encoder), items)
    loaded: list[LoadedImage] = []
    for outcome in outcomes:
        if isinstance(outcome, ItemError):
            report.errors.append(outcome)
        else:
            loaded.append(outcome)
    return loaded


def load_item(
    ctx: WorkerContext, raw: dict[str, Any], tenant: str | None, encoder: Any
) -> LoadedImage | ItemError:
    index = raw["index"]
    item = EmbedItem.model_validate({k: v for k, v in raw.items() if k != "index"})
    try:
        data, filename = read_item_bytes(ctx, item, tenant)
        info, image = sniff_and_decode(
            data, ctx.settings.max_image_pixels, draft_size=encoder.input_resolution
        )
        pixels = encoder.preprocess(image)
    except (SourceRejected, ImageRejected) as exc:
        return ItemError(index=index, source=item.source, code=exc.code, message=exc.message)
    return LoadedImage(index, item, filename, data, info, pixels)


def read_item_bytes(ctx: WorkerContext, item: EmbedItem, tenant: str | None) -> tuple[bytes, str]:
    settings = ctx.settings
    if item.upload_id is not None:
        data, upload = ctx.uploads.read(item.upload_id, tenant)
        return data, upload.filename
    if item.path is not None:
        data, path = read_library_file(item.path, settings.library_roots, settings.max_upload_bytes)
        return data, path.name
    url = str(item.url)
    data = fetch_url(
        url, settings.max_upload_bytes, settings.url_timeout_s, settings.allow_private_urls
    )
    return data, Path(urlsplit(url).path).name or url


def store_batch(
    ctx: WorkerContext,
    scope: TenantVectors,
    collection: str,
    loaded: list[LoadedImage],
    report: BatchReport,
) -> None:
    import torch

    encoder = ctx.encoder()
    started = time.perf_counter()
    vectors = encoder.encode_images(torch.stack([image.pixels for image in loaded]))
    report.timings["encode"] = time.perf_counter() - started
    started = time.perf_counter()
    records = {}
    for image, vector in zip(loaded, vectors, strict=True):
        key = asset_key(image.asset_id)
        if not ctx.blobs.exists(key):
            ctx.blobs.put(key, image.data)
        records[image.asset_id] = _record(image, key, vector.tolist())
        report.asset_ids[image.index] = image.asset_id
    ctx.upsert(scope, collection, list(records.values()))
    report.stored = len(loaded)
    report.timings["write"] = time.perf_counter() - started


def _record(image: LoadedImage, content_key: str, vector: list[float]) -> AssetRecord:
    return AssetRecord(
        asset_id=image.asset_id,
        vector=vector,
        filename=image.filename,
        source=image.item.source,
        content_key=content_key,
        mime_type=image.info.mime_type,
        width=image.info.width,
        height=image.info.height,
        metadata=image.item.metadata,
        created_at=time.time(),
    )


@app.task(name=PLAN_EMBED, base=ContextTask, bind=True, acks_late=True)
def plan_embed_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        plan_embed(self.ctx, job_id)


def fail_batch(
    ctx: WorkerContext, job_id: str, batch_id: str, items: list[dict[str, Any]], exc: Exception
) -> None:
    """After the last retry every item of the batch is reported failed, so the job still ends."""
    errors = [
        ItemError(
            index=raw["index"],
            source=EmbedItem.model_validate({k: v for k, v in raw.items() if k != "index"}).source,
            code="internal_error",
            message=f"{type(exc).__name__}: {exc}",
        )
        for raw in items
    ]
    ctx.jobs.complete_batch(job_id, batch_id, 0, errors, {})


@app.task(name=EMBED_BATCH, base=ContextTask, bind=True, acks_late=True, max_retries=3)
def embed_batch_task(
    self: ContextTask, job_id: str, batch_id: str, items: list[dict[str, Any]]
) -> None:
    try:
        embed_batch(self.ctx, job_id, batch_id, items)
    except Exception as exc:  # Milvus or the blob store down: retry with backoff, then report
        log.exception("job %s batch %s failed", job_id, batch_id)
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
        fail_batch(self.ctx, job_id, batch_id, items, exc)
