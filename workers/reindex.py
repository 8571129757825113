"""Re-index jobs: a collection's next version built beside the one that answers, then swapped in.

A plan marks the collection (shared/milvus/reindexing.py), creates version n+1 for the chosen model
and pages the current version's ids into batches. Each batch re-encodes its assets from
their originals in the blob store with the new model, or copies the vectors as they are
when the model is the same (a rebuild that gains what newer versions carry, such as keyword
search). Searches keep answering from version n throughout; writers that arrive meanwhile
write both versions. The last step copies whatever raced the mark, moves the alias in one
step, and drops version n when asked.

A re-index that ends without its swap (failed, cancelled, its work abandoned by the watchdog,
its record expired) leaves version n answering, and `end_stopped` drops version n+1 and lifts
the mark: the one cleaning, run by the task that saw the job end (`settle`) and by every
watchdog round (`sweep`) for the ends no re-index task sees. The alias moves only in the
swap, after the catch-up, so it never names a partial version; a version the alias already
names is finished, not dropped.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from shared.blobs import BlobNotFound
from shared.contract import CollectionInfo, ErrorCode, ItemError, ReindexJob, ReindexResult
from shared.errors import CodedError, Conflict, InputRejected, NotFound
from shared.jobs.records import START, THEN
from shared.milvus.records import AssetRecord
from shared.milvus.reindexing import LIVE_STATES, LOCK_TIMEOUT_S, ReindexMark
from shared.milvus.tenants import TenantVectors
from shared.tasks import REINDEX_BATCH, SWAP_REINDEX
from workers.assets import decode_asset, with_vectors
from workers.context import WorkerContext
from workers.retries import with_retries

if TYPE_CHECKING:
    import torch

    from shared.clip.families import Encoder

log = logging.getLogger("assetrag.reindex")
# Rounds of "copy what the new version lacks" before the swap; writers write both versions
# while the mark stands, so a second round finds (next to) nothing.
CATCH_UP_ROUNDS = 3
# How long the watchdog's sweep waits for a collection's lock before leaving it to the next
# round (a plan or a swap holds it for seconds at most).
SWEEP_WAIT_S = 5.0


def plan_reindex(ctx: WorkerContext, job_id: str) -> int:
    """Marks the collection, makes its next version and sends the batches."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    try:
        return _plan(ctx, job_id, request, scope)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        settle(ctx, job_id)
        return 0


def _plan(ctx: WorkerContext, job_id: str, request: ReindexJob, scope: TenantVectors) -> int:
    name = request.collection
    scope.adopt(name)  # a collection from before versions becomes version 1 behind an alias
    current = scope.get_collection(name, with_count=False)
    encoder = ctx.encoder(request.model)
    with ctx.reindexing.lock(scope.physical(name)):
        held = _mark(ctx, scope, job_id, current, encoder)
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
    if ctx.jobs.plan(job_id, len(ids), batches, result, then=swap):
        return len(batches)
    settle(ctx, job_id)  # cancelled while it planned (a redelivered plan finds it planned)
    return 0


def _mark(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    current: CollectionInfo,
    encoder: Encoder,
) -> ReindexMark:
    """The collection marked for this job and its next version made (the lock held). A
    re-index that stopped short before is cleaned first; a redelivered plan finds its own
    mark and the version it made."""
    name = current.name
    physical = scope.physical(name)
    _clean(ctx, physical)
    made = {v.version for v in scope.versions(name, counted=False)}
    mark = ReindexMark(
        job_id=job_id,
        model=encoder.model_id,
        version=max(made) + 1,
        from_version=current.version,
        from_model=current.model,
    )
    held = ctx.reindexing.begin(physical, mark)
    if held.job_id != job_id:
        raise Conflict(ErrorCode.reindex_running, f"{name} is being re-indexed by {held.job_id}")
    if held.version not in made:
        version = scope.create_version(name, held.model, encoder.dim).version
        if version != held.version:
            raise Conflict(ErrorCode.reindex_running, f"version {held.version} of {name} was taken")
    return held


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
        settle(ctx, job_id)  # a cancelled job's work is dropped here, and that may end it
        return
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    written, errors = copy_assets(
        ctx, scope, request.collection, ReindexMark.model_validate(mark), asset_ids, first_index
    )
    if ctx.jobs.complete_batch(job_id, batch_id, written, errors, {}):
        settle(ctx, job_id)  # a batch ends a re-index only when it is cancelling


def fail_batch(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    first_index: int,
    asset_ids: list[str],
    error: CodedError,
) -> None:
    errors = [error.item_error(first_index + i, f"asset:{a}") for i, a in enumerate(asset_ids)]
    if ctx.jobs.complete_batch(job_id, batch_id, 0, errors, {}):
        settle(ctx, job_id)


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
        settle(ctx, job_id)
        return
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    scope = ctx.scoped(tenant)
    held = ReindexMark.model_validate(mark)
    name = request.collection
    # A redelivered swap after the alias moved has nothing to catch up (and version n may
    # be dropped already).
    if _current(scope, name) != held.version:
        catch_up(ctx, scope, name, held)
    physical = scope.physical(name)
    with ctx.reindexing.lock(physical):
        if not ctx.reindexing.job_alive(job_id):
            log.warning("re-index job %s ended before its swap: nothing swapped", job_id)
            swapped = False
        else:
            scope.swap(name, held.version)
            ctx.reindexing.swapped(physical, job_id)
            swapped = True
    if not swapped:
        settle(ctx, job_id)
        return
    if request.drop_previous:
        _drop_previous(scope, name, held.from_version)
    job = ctx.jobs.get(job_id)
    if job is None or not isinstance(job.result, ReindexResult):
        raise RuntimeError(f"re-index job {job_id} has no planned result")
    update = {"swapped": True, "previous_dropped": request.drop_previous}
    result = job.result.model_copy(update=update)
    ctx.jobs.complete(job_id, result, job.progress)
    log.info("re-index of %s: version %d answers now", name, held.version)


def _current(scope: TenantVectors, name: str) -> int:
    """The version the alias names now, read from Milvus (not a cached describe)."""
    return next(v.version for v in scope.versions(name, counted=False) if v.current)


def _drop_previous(scope: TenantVectors, name: str, version: int) -> None:
    with contextlib.suppress(NotFound):  # a redelivered swap dropped it already
        scope.drop_version(name, version)


# ── a re-index that ended without its swap ─────────────────────────────────────────────────


def settle(ctx: WorkerContext, job_id: str) -> None:
    """After a re-index task saw its job end: cleans the job's collection if the job ended
    without its swap."""
    state = ctx.jobs.state(job_id)
    if state is None or state in LIVE_STATES:
        return  # running still, or expired (then the watchdog's sweep cleans)
    request, tenant = ctx.jobs.submitted(job_id, ReindexJob)
    end_stopped(ctx, ctx.scoped(tenant).physical(request.collection))


def end_stopped(
    ctx: WorkerContext, collection: str, wait_s: float = LOCK_TIMEOUT_S
) -> ReindexMark | None:
    """If the collection (by its stored name) carries the mark of a re-index that ended
    without its swap: the version it was building dropped and the mark lifted, so writers
    stop writing it. Returns the mark it cleaned."""
    with ctx.reindexing.lock(collection, wait_s):
        return _clean(ctx, collection)


def _clean(ctx: WorkerContext, collection: str) -> ReindexMark | None:
    """`end_stopped` with the collection's lock held."""
    mark = ctx.reindexing.stopped(collection)
    if mark is None:
        return None
    try:
        ctx.vectors.drop_version(collection, mark.version)
    except NotFound:
        pass  # never made (the plan stopped before), or gone with its collection
    except Conflict as exc:
        if exc.code != ErrorCode.version_in_use:
            raise
        # the alias moved to it before the job ended: the swap ran, so the version is whole
        ctx.reindexing.swapped(collection, mark.job_id)
        return None
    ctx.reindexing.end(collection, mark.job_id)
    log.warning(
        "re-index job %s ended without its swap: version %d of %s dropped",
        mark.job_id,
        mark.version,
        collection,
    )
    return mark


def sweep(ctx: WorkerContext) -> list[str]:
    """Every collection's stopped re-index cleaned (a watchdog duty: it catches the ends no
    re-index task sees, such as work the watchdog abandoned or a record that expired); a
    collection whose lock is held, or whose Milvus fails, waits for the next round. Returns
    the jobs cleaned."""
    cleaned = []
    for collection in ctx.reindexing.marked():
        if ctx.reindexing.stopped(collection) is None:
            continue  # building, or swapped: most marks, read without the lock
        try:
            mark = end_stopped(ctx, collection, wait_s=SWEEP_WAIT_S)
        except Exception:
            log.exception("re-index mark of %s: cleaning failed; next round again", collection)
            continue
        if mark is not None:
            cleaned.append(mark.job_id)
    return cleaned


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
    """The swap; a failure there fails the job, which drops the version it was building."""
    try:
        swap_reindex(ctx, job_id, mark)
    except Exception as exc:
        log.exception("re-index job %s failed at the swap", job_id)
        ctx.jobs.fail(job_id, ErrorCode.internal_error, f"{type(exc).__name__}: {exc}")
        settle(ctx, job_id)
