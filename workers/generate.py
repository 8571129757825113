"""Generate jobs: references (named or retrieved) plus a prompt → Gemini → images, saved back
with their lineage when asked.

A single-prompt job runs as one task. A job with `items` is planned into groups of items
(`ASSETRAG_GENERATE_BATCH_SIZE`), each a task on the generate queue whose items run side by
side; each item's result is kept in Redis as it lands, and a last step on the default queue
assembles the job's result. In batch mode the items go to Gemini's Batch API instead
(workers/generate_batch.py); its answers take the same road back.

Reference queries are searched first, on a query worker (`resolve_queries`), and saved images
are encoded after, on an embed worker (workers/generation.py): the generate workers, which
wait on Gemini, run no model.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from shared.contract import GenerateRequest, GenerateResult, Progress
from shared.errors import CodedError
from shared.jobs.records import START, THEN
from shared.milvus.tenants import TenantVectors
from shared.tasks import FINISH_GENERATE, GENERATE_ITEMS, RESOLVE_REFERENCES, RUN_GENERATE
from workers import brand
from workers.context import WorkerContext
from workers.generate_batch import submit_batch
from workers.generation import (
    Completion,
    ItemOutcome,
    end_work,
    first_result,
    generate_variants,
    report,
    run_once,
    settle_item,
    summed,
)
from workers.references import (
    Found,
    gather,
    needs_search,
    record_found,
    recorded_found,
    search_sources,
)

log = logging.getLogger("assetrag.generate")
SEARCHING = "searching"  # the work id of a job's reference searches, on a query worker
SEARCHED = "searched"  # the work id of its first task again, once they are recorded


def resolve_queries(ctx: WorkerContext, job_id: str, work_id: str) -> None:
    """On a query worker: every item's query sources searched (with their collection's model),
    the hits recorded on the job, then the generation handed on. A search that fails (a
    collection gone, keyword search missing) fails the job."""
    if not ctx.jobs.start_work(job_id, work_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, GenerateRequest)
    try:
        found = search_sources(ctx, request, tenant)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return
    record_found(ctx, job_id, found)
    task = ctx.queue.message(RUN_GENERATE, job_id, SEARCHED)
    ctx.jobs.hand_over(job_id, work_id, SEARCHED, task)


def run_item(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    index: int,
    found: Found,
) -> ItemOutcome:
    """One item, interactively, once: its sources → its Gemini calls → kept images (with a
    kit: its next attempt, workers/brand.py)."""
    item = request.generations()[index]
    if item.kit is not None:
        return brand.run_kit_item(ctx, scope, job_id, request, index, found)

    def attempt(number: int) -> ItemOutcome:
        try:
            gathered = gather(ctx, scope, request, index, item, found)
        except CodedError as exc:
            return ItemOutcome(index=index, errors=[exc.item_error(index, f"item:{index}")])
        made = ctx.run_async(generate_variants(ctx, request.collection, item, gathered))
        return settle_item(ctx, job_id, request, index, item, gathered, made, number)

    return run_once(ctx, job_id, index, attempt)


def run_generate(ctx: WorkerContext, job_id: str, work_id: str = START) -> None:
    """A job's first task: a single prompt runs here; items are planned (or batched). A job
    with reference queries has them searched on a query worker first, which sends this task
    again under another work id."""
    if not ctx.jobs.start_work(job_id, work_id, ctx.name):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    if work_id == START and needs_search(request):
        search = ctx.queue.message(RESOLVE_REFERENCES, job_id, SEARCHING)
        ctx.jobs.hand_over(job_id, work_id, SEARCHING, search)
    elif request.mode == "batch":
        submit_batch(ctx, job_id, request, work_id)
    elif request.bulk:
        plan_items(ctx, job_id, request, work_id)
    else:
        run_single(ctx, job_id, request, work_id)


def run_single(
    ctx: WorkerContext, job_id: str, request: GenerateRequest, work_id: str = START
) -> None:
    """The single-prompt form: its calls (variants × formats) are the job's items; all
    failing fails the job."""
    scope = ctx.scoped(ctx.jobs.tenant(job_id))
    item = request.generations()[0]
    found = recorded_found(ctx, job_id)
    if item.kit is not None:
        done = brand.run_kit_item(ctx, scope, job_id, request, 0, found)
        if brand.waiting(done):
            brand.to_scoring(ctx, job_id, work_id, [0], [0])
            return
        finish_work(ctx, job_id, work_id, request, [done])
        return
    try:
        gathered = gather(ctx, scope, request, 0, item, found)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return

    def attempt(number: int) -> ItemOutcome:
        made = ctx.run_async(generate_variants(ctx, request.collection, item, gathered))
        return settle_item(ctx, job_id, request, 0, item, gathered, made, number)

    end_single(ctx, job_id, work_id, request, run_once(ctx, job_id, 0, attempt))


def end_single(
    ctx: WorkerContext, job_id: str, work_id: str, request: GenerateRequest, done: ItemOutcome
) -> None:
    """The single form's end: its one item's result is the job's (its failure, the job's)."""
    item = request.generations()[0]
    if done.result is None:
        first = done.errors[0]
        ctx.jobs.fail(job_id, first.code, first.message)
        return
    failed = len(done.errors)
    total = item.count * len(item.formats)
    result = GenerateResult(
        images=done.result.images,
        text=done.result.text,
        references=done.result.references,
        sources=done.result.sources,
        model=done.model or ctx.settings.gemini_model,
        usage=done.usage,
        brand=done.result.brand,
    )
    progress = Progress(total=total, succeeded=total - failed, failed=failed)
    completion = Completion(result=result, progress=progress, errors=done.errors)
    end_work(ctx, job_id, work_id, done.saves, completion)


def finish_work(
    ctx: WorkerContext,
    job_id: str,
    work_id: str,
    request: GenerateRequest,
    outcomes: list[ItemOutcome],
) -> None:
    """A piece of interactive work ends: a group of items counted, or the single form's job
    ended with its result."""
    if request.bulk:
        report(ctx, job_id, work_id, outcomes)
    else:
        end_single(ctx, job_id, work_id, request, outcomes[0])


def score_items(
    ctx: WorkerContext, job_id: str, work_id: str, indices: list[int], waiting_for: list[int]
) -> None:
    """On a query worker: a piece of work's kit items scored (workers/brand.py)."""
    brand.score_items(ctx, job_id, work_id, indices, waiting_for, finish_work)


def plan_items(
    ctx: WorkerContext, job_id: str, request: GenerateRequest, work_id: str = START
) -> int:
    """Groups of items as tasks on the generate queue; the last step assembles the result."""
    total = len(request.generations())
    size = ctx.settings.generate_batch_size
    batches = [
        (f"g{start // size}", list(range(start, min(start + size, total))))
        for start in range(0, total, size)
    ]
    tasks = [
        (batch_id, ctx.queue.message(GENERATE_ITEMS, job_id, batch_id, indices))
        for batch_id, indices in batches
    ]
    then = ctx.queue.message(FINISH_GENERATE, job_id)
    result = first_result(ctx, request)
    planned = ctx.jobs.plan(job_id, total, tasks, result, then=then, start=work_id)
    return len(tasks) if planned else 0


def generate_items(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    indices: list[int],
    again: list[int] | None = None,
) -> int:
    """A group of items side by side (or, `again`, those of its kit items to be made again);
    returns how many made an image. While kit items wait to be scored, the work goes to a
    query worker and comes back (workers/brand.py)."""
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, GenerateRequest)
    scope = ctx.scoped(tenant)
    found = recorded_found(ctx, job_id)
    todo = indices if again is None else again
    # Threads, not the event loop, for the Milvus and blob calls around each item's Gemini
    # calls (those run on the process's one loop, however many threads wait on them).
    with ThreadPoolExecutor(len(todo), thread_name_prefix="generate-item") as pool:
        outcomes = list(pool.map(lambda i: _guarded(ctx, scope, job_id, request, i, found), todo))
    waiting_for = [o.index for o in outcomes if brand.waiting(o)]
    if waiting_for:
        brand.to_scoring(ctx, job_id, batch_id, indices, waiting_for)
        return 0
    if again is not None:
        recorded = ctx.jobs.claims.recorded(job_id, indices)
        outcomes = [ItemOutcome.model_validate_json(recorded[i]) for i in indices if i in recorded]
    finish_work(ctx, job_id, batch_id, request, outcomes)
    return sum(o.result is not None for o in outcomes)


def _guarded(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    index: int,
    found: Found,
) -> ItemOutcome:
    try:
        return run_item(ctx, scope, job_id, request, index, found)
    except CodedError as exc:
        return ItemOutcome(index=index, errors=[exc.item_error(index, f"item:{index}")])


def finish_generate(ctx: WorkerContext, job_id: str) -> None:
    """A bulk job's last step: every item's result, in item order, as the job's result."""
    if not ctx.jobs.start_work(job_id, THEN, ctx.name):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    recorded = sorted(ctx.jobs.claims.all_recorded(job_id).items())
    outcomes = [ItemOutcome.model_validate_json(raw) for _, raw in recorded]
    items = [o.result for o in outcomes if o.result is not None]
    batch = ctx.jobs.ledger.info(job_id) if request.mode == "batch" else {}
    result = GenerateResult(
        images=[image for item in items for image in item.images],
        text="",
        references=list(dict.fromkeys(r for item in items for r in item.references)),
        model=ctx.settings.gemini_model,
        mode=request.mode,
        items=items,
        usage=summed(o.usage for o in outcomes),
        batch=batch.get("name"),
        batch_state=batch.get("state"),
    )
    ctx.jobs.complete(job_id, result)
