"""Batch-mode generate jobs: the items go to Gemini's Batch API (half the price, within 24
hours) and no worker waits on them.

1. `submit_batch` (the job's first task, generate queue) resolves every item's references,
   sends all the requests as one batch (inline, or a JSON Lines file above the inline
   limit), and records the batch beside the job: the job's one piece of outstanding work,
   `upstream`, is marked started by Gemini and not sent.
2. `poll_batches` runs every `ASSETRAG_GEMINI_BATCH_POLL_S` on one default-queue worker at a
   time (a Redis lock): it asks Gemini about each waiting batch, passes a cancel on, keeps the
   job alive for the watchdog, and when the batch ends sends the `upstream` work's task.
3. `collect_batch` (generate queue) reads the answers, maps them back to items by key, keeps
   the images (handing those saved into the collection to the embed workers) and counts the
   work; the job's last step assembles its result as for interactive items.
"""

from __future__ import annotations

import json
import logging

from shared.contract import (
    TERMINAL_STATES,
    ErrorCode,
    GenerateRequest,
    GenerateResult,
    ItemError,
    JobState,
    Progress,
)
from shared.errors import CodedError
from shared.gemini import BATCH_DONE_STATES, BatchRequest, GenerationError
from shared.jobs.records import START
from shared.tasks import COLLECT_BATCH, FINISH_GENERATE
from workers.context import WorkerContext
from workers.generation import (
    ItemOutcome,
    first_result,
    load_references,
    reference_ids,
    report,
    resolved_references,
    settle_item,
)

log = logging.getLogger("assetrag.generate.batch")
UPSTREAM = "upstream"  # the work id of a job's Gemini batch


def request_key(index: int, variant: int) -> str:
    return f"{index}:{variant}"


def submit_batch(
    ctx: WorkerContext, job_id: str, request: GenerateRequest, work_id: str = START
) -> str | None:
    """Sends the job's items as one Gemini batch; returns its name (None: nothing sent)."""
    scope = ctx.scoped(ctx.jobs.tenant(job_id))
    generations = request.generations()
    resolved = resolved_references(ctx, job_id)
    requests: list[BatchRequest] = []
    references: dict[int, list[str]] = {}
    errors: list[ItemError] = []
    for index, item in enumerate(generations):
        ids = reference_ids(item, index, resolved)
        try:
            images = load_references(ctx, scope, request.collection, ids)
        except CodedError as exc:
            errors.append(exc.item_error(index, f"item:{index}"))
            continue
        references[index] = ids
        requests += [
            BatchRequest(
                request_key(index, v), item.prompt, images, item.aspect_ratio, item.image_size
            )
            for v in range(item.count)
        ]
    result = first_result(ctx, request)
    if not requests:
        failed = len(generations)
        ctx.jobs.complete(job_id, result, Progress(total=failed, failed=failed), errors)
        return None
    sent = ctx.jobs.ledger.info(job_id)
    if sent.get("name"):
        # this task was delivered again after sending: the batch exists, send nothing twice
        name, as_file = sent["name"], sent.get("input") == "file"
    else:
        try:
            name, as_file = ctx.batches().create(requests, f"assetrag-{job_id}")
        except GenerationError as exc:
            ctx.jobs.fail(job_id, exc.code, str(exc))
            return None
        ctx.jobs.ledger.set_info(job_id, name=name, input="file" if as_file else "inline")
    log.info(
        "job %s: %d request(s) sent to Gemini as batch %s (%s)",
        job_id,
        len(requests),
        name,
        "file" if as_file else "inline",
    )
    batch = {
        "name": name,
        "input": "file" if as_file else "inline",
        "state": "JOB_STATE_PENDING",
        "references": json.dumps(references),
        "keys": json.dumps([r.key for r in requests]),
        "errors": json.dumps([e.model_dump() for e in errors]),
    }
    collect = ctx.queue.message(COLLECT_BATCH, job_id)
    then = ctx.queue.message(FINISH_GENERATE, job_id)
    result.batch = name
    if not ctx.jobs.ledger.await_upstream(
        job_id, UPSTREAM, collect, len(generations), result, then, batch, start=work_id
    ):
        # the job was cancelled while the batch was sent (and has ended: nothing to record)
        cancel_upstream(ctx, job_id, name, record=False)
    return name


def poll_batches(ctx: WorkerContext) -> list[tuple[str, str]]:
    """One round over the waiting batches; returns (job id, upstream state) for each asked."""
    seen: list[tuple[str, str]] = []
    for job_id in ctx.jobs.ledger.waiting():
        state = ctx.jobs.state(job_id)
        if state is None or state in TERMINAL_STATES:
            ctx.jobs.ledger.forget(job_id)
            continue
        info = ctx.jobs.ledger.info(job_id)
        name = info.get("name")
        if not name:
            ctx.jobs.ledger.forget(job_id)
            continue
        if state == JobState.cancelling and not info.get("cancel_sent"):
            cancel_upstream(ctx, job_id, name)
        try:
            upstream = ctx.batches().state(name)
        except GenerationError as exc:
            log.warning("job %s: could not ask Gemini about batch %s: %s", job_id, name, exc)
            continue
        seen.append((job_id, upstream))
        if upstream != info.get("state"):
            show_state(ctx, job_id, upstream)
        if upstream in BATCH_DONE_STATES:
            # sent before forgetting: a crash in between leaves the batch to the next round
            ctx.jobs.audit.resend(job_id, UPSTREAM, ctx.queue.message(COLLECT_BATCH, job_id))
            ctx.jobs.ledger.forget(job_id)
        else:
            ctx.jobs.audit.touch(job_id)  # alive: the watchdog leaves it alone
    return seen


def show_state(ctx: WorkerContext, job_id: str, upstream: str) -> None:
    """Keeps the batch's state beside the job, and in its result for clients to see."""
    ctx.jobs.ledger.set_info(job_id, state=upstream)
    job = ctx.jobs.get(job_id)
    if job is not None and not job.finished and isinstance(job.result, GenerateResult):
        ctx.jobs.set_result(job_id, job.result.model_copy(update={"batch_state": upstream}))


def cancel_upstream(ctx: WorkerContext, job_id: str, name: str, record: bool = True) -> None:
    """Passes a cancel on, once: a batch that ended meanwhile refuses it, and is then
    collected as it is."""
    try:
        ctx.batches().cancel(name)
        log.info("job %s: cancelled Gemini batch %s", job_id, name)
    except GenerationError as exc:
        log.warning("job %s: Gemini did not cancel batch %s: %s", job_id, name, exc)
    if record:
        ctx.jobs.ledger.set_info(job_id, cancel_sent="1")


def collect_batch(ctx: WorkerContext, job_id: str) -> int:
    """Stores what the finished batch made, item by item; returns the items that succeeded."""
    if not ctx.jobs.start_work(job_id, UPSTREAM, ctx.name):
        return 0
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    info = ctx.jobs.ledger.info(job_id)
    references = {int(k): v for k, v in json.loads(info.get("references", "{}")).items()}
    outcomes = [
        ItemOutcome(e.index, errors=[e])
        for e in map(ItemError.model_validate, json.loads(info.get("errors", "[]")))
    ]
    try:
        state, answers = ctx.batches().results(info["name"], json.loads(info.get("keys", "[]")))
    except GenerationError as exc:
        entry = ctx.jobs.audit.work(job_id).get(UPSTREAM)
        if entry is not None and entry.attempts < ctx.settings.work_attempts:
            # a paid batch's answers are worth another try: back to the poller
            log.warning("job %s: could not read batch %s (%s); later", job_id, info["name"], exc)
            ctx.jobs.ledger.wait_again(job_id, UPSTREAM, info["name"])
            return 0
        state, answers = f"unreadable ({exc})", {}
    cancelling = ctx.jobs.state(job_id) == JobState.cancelling
    generations = request.generations()
    for index, ids in sorted(references.items()):
        item = generations[index]
        answered = [
            answer
            for v in range(item.count)
            if (answer := answers.get(request_key(index, v))) is not None
        ]
        if not answered:
            if not cancelling:  # a cancelled job's unanswered items are not failures
                message = f"the Gemini batch ended {state} without answering this item"
                error = ItemError(
                    index=index,
                    source=f"item:{index}",
                    code=ErrorCode.upstream_error,
                    message=message,
                )
                outcomes.append(ItemOutcome(index, errors=[error]))
            continue
        try:
            outcomes.append(settle_item(ctx, job_id, request, index, item, ids, answered))
        except CodedError as exc:
            outcomes.append(ItemOutcome(index, errors=[exc.item_error(index, f"item:{index}")]))
    log.info("job %s: batch %s ended %s, %d answer(s)", job_id, info["name"], state, len(answers))
    return report(ctx, job_id, UPSTREAM, outcomes)
