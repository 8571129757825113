"""Brand-check jobs: every asset of a collection (or those a filter picks) scored against a
kit, as a generated output is (workers/brand.py's Scorer).

A plan pages through the asset ids into batches, scored on query workers: an asset's stored
vector is used as it is when its collection has the kit's model, and the image re-encoded
when it has another; its palette distance is read from its original. Each asset's scores are
its line of the results file; the last step lists the worst first."""

from __future__ import annotations

import json

import numpy as np

from shared.contract import (
    AssetScore,
    BrandCheckRequest,
    BrandCheckResult,
    ErrorCode,
    ItemError,
)
from shared.errors import CodedError
from shared.jobs.records import START, THEN
from shared.tasks import BRAND_CHECK_BATCH, FINISH_BRAND_CHECK
from workers.brand import Scorer
from workers.context import WorkerContext
from workers.retries import with_retries

WORST_SHOWN = 50


def plan_brand_check(ctx: WorkerContext, job_id: str) -> int:
    """Pages through the collection's ids (those the filter picks) into batches."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, BrandCheckRequest)
    scope = ctx.scoped(tenant)
    try:
        version = scope.get_collection(request.collection, with_count=False).version
        ids = scope.asset_ids(request.collection, version, filter=request.filter)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return 0
    size = ctx.settings.duplicates_batch_size
    batches = [
        (
            f"b{n}",
            ctx.queue.message(
                BRAND_CHECK_BATCH, job_id, f"b{n}", version, start, ids[start : start + size]
            ),
        )
        for n, start in enumerate(range(0, len(ids), size))
    ]
    result = BrandCheckResult(kit=request.kit, checked=0, passed=0, failed=0, worst=[])
    last = ctx.queue.message(FINISH_BRAND_CHECK, job_id)
    return len(batches) if ctx.jobs.plan(job_id, len(ids), batches, result, then=last) else 0


def brand_check_batch(
    ctx: WorkerContext, job_id: str, batch_id: str, version: int, start: int, asset_ids: list[str]
) -> None:
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, BrandCheckRequest)
    scope = ctx.scoped(tenant)
    scorer = Scorer(ctx, scope, ctx.kits.get(tenant, request.kit))
    same_model = ctx.target(scope, request.collection).model == scorer.model
    found = {
        r.asset_id: r
        for r in scope.get_assets(request.collection, asset_ids, version, with_vector=same_model)
    }
    errors: list[ItemError] = []
    for index, asset_id in enumerate(asset_ids, start=start):
        record = found.get(asset_id)
        try:
            if record is None:
                raise CodedError(ErrorCode.asset_not_found, f"{asset_id} was deleted meanwhile")
            data = ctx.blobs.get(record.content_key)
            vector = np.asarray(record.vector) if same_model and record.vector else None
            score = scorer.score(data, vector)
        except CodedError as exc:
            errors.append(exc.item_error(index, f"asset:{asset_id}"))
            continue
        line = AssetScore(
            asset_id=asset_id,
            filename=record.filename,
            similarity=score.similarity or 0.0,
            palette_distance=score.palette_distance,
            passed=score.passed,
        )
        ctx.jobs.claims.record(job_id, index, json.dumps({"result": line.model_dump(mode="json")}))
    ctx.jobs.complete_batch(job_id, batch_id, len(asset_ids) - len(errors), errors, {})


def brand_check_batch_with_retries(
    ctx: WorkerContext, job_id: str, batch_id: str, version: int, start: int, asset_ids: list[str]
) -> None:
    """Tried again while Milvus or the blob store is down; then its assets fail, the job ends."""

    def give_up(error: CodedError) -> None:
        errors = [error.item_error(start + n, f"asset:{a}") for n, a in enumerate(asset_ids)]
        ctx.jobs.complete_batch(job_id, batch_id, 0, errors, {})

    with_retries(
        ctx,
        job_id,
        batch_id,
        lambda: brand_check_batch(ctx, job_id, batch_id, version, start, asset_ids),
        give_up,
    )


def finish_brand_check(ctx: WorkerContext, job_id: str) -> None:
    """Every asset's scores read back; the result lists the worst first."""
    if not ctx.jobs.start_work(job_id, THEN, ctx.name):
        return
    request = BrandCheckRequest.model_validate(ctx.jobs.request(job_id))
    scores = [
        AssetScore.model_validate(json.loads(raw)["result"])
        for raw in ctx.jobs.claims.all_recorded(job_id).values()
    ]
    scores.sort(key=worst_first)
    passed = sum(s.passed for s in scores)
    result = BrandCheckResult(
        kit=request.kit,
        checked=len(scores),
        passed=passed,
        failed=len(scores) - passed,
        worst=scores[:WORST_SHOWN],
    )
    ctx.jobs.complete(job_id, result)


def worst_first(score: AssetScore) -> tuple[bool, float, float]:
    """Failed before passed; then the least alike; then the furthest from the palette."""
    return score.passed, score.similarity, -(score.palette_distance or 0.0)
