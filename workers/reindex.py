"""Re-index jobs: a collection's next version built beside the one that answers, then swapped in.

A plan marks the collection (shared/milvus/reindexing.py), creates version n+1 for the chosen model
and pages the current version's ids into batches. Each batch re-encodes its assets from
their originals in the blob store with the new model, or copies the vectors as they are
when the model is the same (a rebuild that gains what newer versions carry, such as keyword
search). Searches keep answering from version n throughout; writers that arrive meanwhile
write both versions. The last step copies whatever raced the mark, moves the alias in one
step, and drops version n when asked. A re-index that fails or is cancelled leaves version
n answering and its partial version listed, to be dropped with DELETE …/versions/{n+1}.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.blobs import BlobNotFound
from shared.contract import ErrorCode, ItemError, ReindexJob, ReindexResult
from shared.errors import CodedError, Conflict, InputRejected
from shared.jobs.records import START, THEN
from shared.milvus.records import AssetRecord
from shared.milvus.reindexing import ReindexMark
from shared.milvus.tenants import TenantVectors
from shared.tasks import REINDEX_BATCH, SWAP_REINDEX
from workers.assets import decode_asset, with_vectors
from workers.context import WorkerContext
from workers.retries import with_retries

if TYPE_CHECKING:
    import torch

log = logging.getLogger("assetrag.reindex")
# Rounds of "copy what the new version lacks" before the swap; writers write both versions
# while the mark stands, so a second round finds (next to) nothing.
CATCH_UP_ROUNDS = 3


def plan_reindex(ctx: WorkerContext, job_id: str) -> int:
    """Marks the collection, makes its next version and sends the batches."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    try:
        return _plan(ctx, job_id, request, scope)
    except CodedError as exc:
        ctx.reindexing.end(scope.physical(request.collection), job_id)
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return 0


def _plan(ctx: WorkerContext, job_id: str, request: ReindexJob, scope: TenantVectors) -> int:
    name = request.collection
    scope.adopt(name)  # a collection from before versions becomes version 1 behind an alias
    current = scope.get_collection(name, with_count=False)
    encoder = ctx.encoder(request.model)
    number = max(v.version for v in scope.versions(name, counted=False)) + 1
    mark = ReindexMark(
        job_id=job_id,
        model=encoder.model_id,
        version=number,
        from_version=current.version,
        from_model=current.model,
    )
    held = ctx.reindexing.begin(scope.physical(name), mark)
    if held.job_id != job_id:
        raise Conflict(ErrorCode.reindex_running, f"{name} is being re-indexed by {held.job_id}")
    made = scope.create_version(name, encoder.model_id, encoder.dim)
    if made.version != held.version:
        raise Conflict(ErrorCode.reindex_running, f"version {held.version} of {name} was taken")
    ids = scope.asset_ids(name, current.version)
    size = ctx.settings.embed_batch_size
    batches = [
        (f"b{n}", ctx.queue.message(REINDEX_BATCH, job_id, f"b{n}", held.model_dump(), i, chunk))
        for n, i in enumerate(range(0, len(ids), size))
        if (chunk := ids[i : i + size])
    ]
    result = ReindexResult(
        collection=name,
        model=encoder.model_id,
        dimension=encoder.dim,
        from_version=current.version,
        version=held.version,
        swapped=False,
    )
    swap = ctx.queue.message(SWAP_REINDEX, job_id, held.model_dump())
    return len(batches) if ctx.jobs.plan(job_id, len(ids), batches, result, then=swap) else 0


def copy_assets(
    ctx: WorkerContext,
    scope: TenantVectors,
    collection: str,
    mark: ReindexMark,
    asset_ids: list[str],
    first_index: int = 0,
) -> tuple[int, list[ItemError]]:
    """These assets of the old version written into the new one: vectors copied for the same
    model, else re-encoded from the originals. Returns (written, item errors)."""
    same = mark.from_model == mark.model
    records = scope.get_assets(collection, asset_ids, mark.from_version, with_vector=same)
    if same:
        return scope.upsert(collection, records, mark.version), []
    index = {asset_id: first_index + i for i, asset_id in enumerate(asset_ids)}
    encoded, errors = _reencode(ctx, records, mark.model, index)
    scope.upsert(collection, encoded, mark.version)
    return len(encoded), errors


def _reencode(
    ctx: WorkerContext, records: list[AssetRecord], model: str, index: dict[str, int]
) -> tuple[list[AssetRecord], list[ItemError]]:
    outcomes = list(ctx.decode_pool.map(lambda r: _pixels(ctx, r, model), records))
    kept = [(r, px) for r, px in zip(records, outcomes, strict=True) if not isinstance(px, str)]
    errors = [
        _error(index[r.asset_id], r, px)
        for r, px in zip(records, outcomes, strict=True)
        if isinstance(px, str)
    ]
    if not kept:
        return [], errors
    encoded = with_vectors(ctx.encoder(model), [r for r, _ in kept], [px for _, px in kept])
    return encoded, errors


def _pixels(ctx: WorkerContext, record: AssetRecord, model: str) -> torch.Tensor | str:
    """The original decoded for `model`, or why it cannot be (as a message)."""
    try:
        data = ctx.blobs.get(record.content_key)
        return decode_asset(ctx, data, record.filename, record.source, {}, model).pixels
    except BlobNotFound:
        return f"the original of {record.asset_id} is missing from the blob store"
    except InputRejected as exc:
        return exc.message


def _error(index: int, record: AssetRecord, message: str) -> ItemError:
    return ItemError(
        index=index, source=record.source, code=ErrorCode.content_not_found, message=message
    )


def reindex_batch(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    mark: dict[str, Any],
    first_index: int,
    asset_ids: list[str],
) -> None:
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    written, errors = copy_assets(
        ctx, scope, request.collection, ReindexMark.model_validate(mark), asset_ids, first_index
    )
    ctx.jobs.complete_batch(job_id, batch_id, written, errors, {})


def fail_batch(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    first_index: int,
    asset_ids: list[str],
    error: CodedError,
) -> None:
    errors = [error.item_error(first_index + i, f"asset:{a}") for i, a in enumerate(asset_ids)]
    ctx.jobs.complete_batch(job_id, batch_id, 0, errors, {})


def catch_up(ctx: WorkerContext, scope: TenantVectors, collection: str, mark: ReindexMark) -> None:
    """Copies assets the old version holds and the new one lacks (written before a writer
    saw the mark), until none are missing."""
    for _ in range(CATCH_UP_ROUNDS):
        missing = sorted(
            set(scope.asset_ids(collection, mark.from_version))
            - set(scope.asset_ids(collection, mark.version))
        )
        if not missing:
            return
        log.info("re-index of %s: %d assets raced the mark", collection, len(missing))
        size = ctx.settings.embed_batch_size
        for i in range(0, len(missing), size):
            copy_assets(ctx, scope, collection, mark, missing[i : i + size])


def swap_reindex(ctx: WorkerContext, job_id: str, mark: dict[str, Any]) -> None:
    if not ctx.jobs.start_work(job_id, THEN, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    held = ReindexMark.model_validate(mark)
    name = request.collection
    catch_up(ctx, scope, name, held)
    scope.swap(name, held.version)
    ctx.reindexing.swapped(scope.physical(name), job_id)
    dropped = False
    if request.drop_previous:
        scope.drop_version(name, held.from_version)
        dropped = True
    job = ctx.jobs.get(job_id)
    if job is None or not isinstance(job.result, ReindexResult):
        raise RuntimeError(f"re-index job {job_id} has no planned result")
    result = job.result.model_copy(update={"swapped": True, "previous_dropped": dropped})
    ctx.jobs.complete(job_id, result, job.progress)
    log.info("re-index of %s: version %d answers now", name, held.version)


def _ending_mark(ctx: WorkerContext, job_id: str) -> None:
    """A re-index that stopped short lifts its mark, so writers stop writing its version."""
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    ctx.reindexing.end(scope.physical(request.collection), job_id)


def reindex_batch_with_retries(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    mark: dict[str, Any],
    first_index: int,
    asset_ids: list[str],
) -> None:
    with_retries(
        ctx,
        job_id,
        batch_id,
        lambda: reindex_batch(ctx, job_id, batch_id, mark, first_index, asset_ids),
        lambda error: fail_batch(ctx, job_id, batch_id, first_index, asset_ids, error),
    )


def swap_or_fail(ctx: WorkerContext, job_id: str, mark: dict[str, Any]) -> None:
    """The swap; a failure there ends the re-index mark with the job, so writers stop
    writing the version it was building."""
    try:
        swap_reindex(ctx, job_id, mark)
    except Exception as exc:
        log.exception("re-index job %s failed at the swap", job_id)
        _ending_mark(ctx, job_id)
        ctx.jobs.fail(job_id, ErrorCode.internal_error, f"{type(exc).__name__}: {exc}")
