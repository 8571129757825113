"""Embed jobs: a planning task expands the job into batches; each batch is read → encoded → stored.

Reading (fetch, sniff, decode, preprocess) runs in a thread pool off the model's path; the
model encodes the whole batch at once; Milvus upserts by content-hash id, so a redelivered
batch or a repeated image is stored once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.contract import (
    EmbedItem,
    EmbedRequest,
    EmbedResult,
    GenerateRequest,
    ItemError,
)
from shared.errors import CodedError, InputRejected
from shared.jobs.records import START
from shared.metrics import observe_batch
from shared.rules import check_item_count
from shared.sources import expand_directory, fetch_url, read_library_file
from shared.tasks import EMBED_BATCH
from workers.assets import NewAsset, decode_asset, store_assets, timed
from workers.context import WorkerContext
from workers.generation import Completion, SaveAsset, complete
from workers.retries import with_retries

log = logging.getLogger("assetrag.embed")


@dataclass
class BatchReport:
    stored: int = 0
    errors: list[ItemError] = field(default_factory=list)
    asset_ids: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def plan_embed(ctx: WorkerContext, job_id: str) -> int:
    """Expands the request into batches on the embed queue; returns how many were sent."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return 0  # cancelled before planning, or planned already
    request = EmbedRequest.model_validate(ctx.jobs.request(job_id))
    try:
        items = _expand(ctx, request)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return 0
    result = EmbedResult(collection=request.collection)
    if not items:
        ctx.jobs.complete(job_id, result)
        return 0
    size = ctx.settings.embed_batch_size
    tasks = [
        (batch_id, ctx.queue.message(EMBED_BATCH, job_id, batch_id, items[i : i + size]))
        for batch_id, i in ((f"b{i // size}", i) for i in range(0, len(items), size))
    ]
    return len(tasks) if ctx.jobs.plan(job_id, len(items), tasks, result) else 0


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
    check_item_count(len(items), ctx.settings.max_items_per_job)
    return [{"index": index, **item} for index, item in enumerate(items)]


def _item(raw: dict[str, Any]) -> tuple[int, EmbedItem]:
    return raw["index"], EmbedItem.model_validate({k: v for k, v in raw.items() if k != "index"})


def embed_batch(
    ctx: WorkerContext, job_id: str, batch_id: str, items: list[dict[str, Any]]
) -> BatchReport | None:
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return None  # counted already, cancelled or expired: the batch is dropped
    request, tenant = ctx.jobs.submitted(job_id, EmbedRequest)
    scope = ctx.scoped(tenant)
    # Read afresh for each batch: a re-index may have swapped in another model's version.
    target = ctx.target(scope, request.collection, fresh=True)
    report = BatchReport()
    with timed(report.timings, "read"):
        loaded = read_batch(ctx, items, tenant, target.model, report)
    if loaded:
        assets = [a for _, a in loaded]
        ids = store_assets(ctx, scope, request.collection, assets, target, report.timings)
        report.asset_ids = {
            index: asset_id for (index, _), asset_id in zip(loaded, ids, strict=True)
        }
        report.stored = len(ids)
    ctx.jobs.complete_batch(job_id, batch_id, report.stored, report.errors, report.asset_ids)
    observe_batch(report.stored, len(report.errors), report.timings)
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
    ctx: WorkerContext,
    items: list[dict[str, Any]],
    tenant: str | None,
    model: str,
    report: BatchReport,
) -> list[tuple[int, NewAsset]]:
    """Every item read and decoded (for `model`) in the thread pool; refusals become the
    report's errors."""
    loaded: list[tuple[int, NewAsset]] = []
    for outcome in ctx.decode_pool.map(lambda raw: load_item(ctx, raw, tenant, model), items):
        if isinstance(outcome, ItemError):
            report.errors.append(outcome)
        else:
            loaded.append(outcome)
    return loaded


def load_item(
    ctx: WorkerContext, raw: dict[str, Any], tenant: str | None, model: str
) -> tuple[int, NewAsset] | ItemError:
    index, item = _item(raw)
    try:
        data, filename = read_item_bytes(ctx, item, tenant)
        return index, decode_asset(ctx, data, filename, item.source, item.metadata, model)
    except InputRejected as exc:
        return exc.item_error(index, item.source)


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


def fail_items(
    ctx: WorkerContext, job_id: str, batch_id: str, items: list[dict[str, Any]], error: CodedError
) -> None:
    """Every item of the batch is reported failed with this error, so the job still ends."""
    errors = [error.item_error(index, item.source) for index, item in map(_item, items)]
    ctx.jobs.complete_batch(job_id, batch_id, 0, errors, {})


def embed_batch_with_retries(
    ctx: WorkerContext, job_id: str, batch_id: str, items: list[dict[str, Any]]
) -> None:
    with_retries(
        ctx,
        job_id,
        batch_id,
        lambda: embed_batch(ctx, job_id, batch_id, items),
        lambda error: fail_items(ctx, job_id, batch_id, items, error),
    )


def save_generated(
    ctx: WorkerContext,
    job_id: str,
    work_id: str,
    saves: list[dict[str, Any]],
    completion: dict[str, Any],
) -> None:
    """Generated images into their collection, encoded here (a generate worker runs no model),
    read from where the job keeps them; stored by content hash, so a redelivery stores them
    once.
    Then the generate work they came from ends as it would have (workers/generation.py)."""
    if not ctx.jobs.start_work(job_id, work_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, GenerateRequest)
    scope = ctx.scoped(tenant)
    target = ctx.target(scope, request.collection, fresh=True)
    wanted = [SaveAsset.model_validate(save) for save in saves]
    assets = list(
        ctx.decode_pool.map(
            lambda s: decode_asset(
                ctx,
                ctx.blobs.get(s.content_key),
                s.filename,
                s.source,
                s.metadata,
                target.model,
            ),
            wanted,
        )
    )
    store_assets(ctx, scope, request.collection, assets, target)
    complete(ctx, job_id, work_id, Completion.model_validate(completion))
