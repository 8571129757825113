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
4. Clean ends (`let_go`): once the answers are read, or the job has ended, a batch still
   running is cancelled and its input file deleted; each step is noted in the ledger, and
   whatever a crash or an unreachable Gemini leaves undone stays with the poller. A batch
   created but never recorded (the worker died in between) is found by its display name.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.contract import (
    TERMINAL_STATES,
    ErrorCode,
    GenerateRequest,
    GenerateResult,
    ItemError,
    JobState,
    Progress,
    SourceHit,
    Usage,
    UsedSource,
)
from shared.errors import CodedError
from shared.gemini import BATCH_DONE_STATES, BatchRequest, GenerationError
from shared.jobs.records import START
from shared.tasks import COLLECT_BATCH, FINISH_GENERATE
from workers.context import WorkerContext
from workers.generation import (
    ItemOutcome,
    Made,
    Outcome,
    first_result,
    keep_outcome,
    report,
    settle_item,
)
from workers.references import Gathered, gather, recorded_found

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
    found = recorded_found(ctx, job_id)
    requests: list[BatchRequest] = []
    sources: dict[int, list[dict[str, Any]]] = {}
    errors: list[ItemError] = []
    for index, item in enumerate(generations):
        try:
            gathered = gather(ctx, scope, request, index, item, found)
        except CodedError as exc:
            errors.append(exc.item_error(index, f"item:{index}"))
            continue
        sources[index] = [used.model_dump(mode="json") for used in gathered.used]
        requests += [
            BatchRequest(
                request_key(index, v),
                item.prompt,
                gathered.images,
                item.formats[0],  # one format: the rules refuse more in batch mode
                item.image_size,
            )
            for v in range(item.count)
        ]
    result = first_result(ctx, request)
    if not requests:
        failed = len(generations)
        ctx.jobs.complete(job_id, result, Progress(total=failed, failed=failed), errors)
        return None
    made = sent_batch(ctx, job_id, requests)
    if made is None:
        return None
    name, as_file = made
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
        "sources": json.dumps(sources),
        "keys": json.dumps([r.key for r in requests]),
        "errors": json.dumps([e.model_dump() for e in errors]),
    }
    collect = ctx.queue.message(COLLECT_BATCH, job_id)
    then = ctx.queue.message(FINISH_GENERATE, job_id)
    result.batch = name
    if not ctx.jobs.ledger.await_upstream(
        job_id, UPSTREAM, collect, len(generations), result, then, batch, start=work_id
    ):
        # the job was cancelled while the batch was sent, and has ended: the batch is cancelled
        # (by the poller, should Gemini not be reached now)
        let_go(ctx, job_id)
    return name


def batch_display_name(job_id: str) -> str:
    """The display name of the job's batch, by which it is found upstream if never recorded."""
    return f"assetrag-{job_id}"


def sent_batch(
    ctx: WorkerContext, job_id: str, requests: list[BatchRequest]
) -> tuple[str, bool] | None:
    """The job's batch (name, whether it went as a file): the one sent before this task was
    delivered again, else sent now; None: it could not be sent, and the job has failed."""
    sent = ctx.jobs.ledger.info(job_id)
    if sent.get("name"):
        # this task was delivered again after sending: the batch exists, send nothing twice
        return sent["name"], sent.get("input") == "file"
    try:
        if sent.get("creating") and (found := find_unrecorded(ctx, job_id, sent)):
            return found
        return create_batch(ctx, job_id, requests)
    except GenerationError as exc:
        ctx.jobs.fail(job_id, exc.code, str(exc))  # the poller then cancels what was made
        return None


def create_batch(ctx: WorkerContext, job_id: str, requests: list[BatchRequest]) -> tuple[str, bool]:
    """Creates the job's batch, each step noted in the ledger before the next one, so that
    a crash anywhere leaves what it made findable: the intent before anything goes to Gemini,
    the input file before a batch is made from it, the name at once."""
    display = batch_display_name(job_id)
    ctx.jobs.ledger.intend(job_id)
    input_file = ctx.batches().upload(requests, display)
    if input_file is not None:
        ctx.jobs.ledger.set_info(job_id, input_file=input_file)
    name, as_file = ctx.batches().create(requests, display, input_file=input_file)
    ctx.jobs.ledger.set_info(job_id, name=name, input="file" if as_file else "inline")
    return name, as_file


def find_unrecorded(
    ctx: WorkerContext, job_id: str, sent: dict[str, str]
) -> tuple[str, bool] | None:
    """A worker died while creating the job's batch: the batch is looked for upstream by its
    display name and kept (any other found is cancelled). With none found, any input file
    left behind is deleted, and None says to create the batch."""
    display = batch_display_name(job_id)
    found = ctx.batches().find(display)
    if not found:
        for left in ctx.batches().input_files(display):
            ctx.batches().delete_file(left)
        return None
    (name, _), others = found[0], found[1:]
    for other, upstream in others:
        if upstream not in BATCH_DONE_STATES:
            ctx.batches().cancel(other)
    as_file = bool(sent.get("input_file"))
    ctx.jobs.ledger.set_info(job_id, name=name, input="file" if as_file else "inline")
    log.warning("job %s: batch %s was created before a crash; found again upstream", job_id, name)
    return name, as_file


def poll_batches(ctx: WorkerContext) -> list[tuple[str, str]]:
    """One round over the waiting batches: follows those of running jobs, and does what is
    left for those of ended jobs; returns (job id, upstream state) for each asked."""
    seen: list[tuple[str, str]] = []
    for job_id in ctx.jobs.ledger.waiting():
        state = ctx.jobs.state(job_id)
        info = ctx.jobs.ledger.info(job_id)
        if state is None or state in TERMINAL_STATES:
            let_go(ctx, job_id, info)
            continue
        # not followed while its task creates or records the batch, or reads its answers
        followed = info.get("name") and "keys" in info and not info.get("collect_sent")
        if followed and (upstream := follow(ctx, job_id, state, info)) is not None:
            seen.append((job_id, upstream))
    return seen


def follow(ctx: WorkerContext, job_id: str, state: str, info: dict[str, str]) -> str | None:
    """Asks Gemini about a running job's batch, passes a cancel on, and sends the task that
    collects the answers once it has ended; returns its state (None: Gemini not reached)."""
    name = info["name"]
    if state == JobState.cancelling and not info.get("cancel_sent"):
        cancel_upstream(ctx, job_id, name)  # not noted when it failed: sent again next round
    try:
        upstream = ctx.batches().state(name)
    except GenerationError as exc:
        log.warning("job %s: could not ask Gemini about batch %s: %s", job_id, name, exc)
        return None
    if upstream != info.get("state"):
        show_state(ctx, job_id, upstream)
    if upstream in BATCH_DONE_STATES:
        # sent before it is noted: a crash in between leaves the batch to the next round
        ctx.jobs.audit.resend(job_id, UPSTREAM, ctx.queue.message(COLLECT_BATCH, job_id))
        ctx.jobs.ledger.set_info(job_id, collect_sent="1")
    else:
        ctx.jobs.audit.touch(job_id)  # alive: the watchdog leaves it alone
    return upstream


def show_state(ctx: WorkerContext, job_id: str, upstream: str) -> None:
    """Keeps the batch's state beside the job, and in its result for clients to see."""
    ctx.jobs.ledger.set_info(job_id, state=upstream)
    job = ctx.jobs.get(job_id)
    if job is not None and not job.finished and isinstance(job.result, GenerateResult):
        ctx.jobs.set_result(job_id, job.result.model_copy(update={"batch_state": upstream}))


def cancel_upstream(ctx: WorkerContext, job_id: str, name: str) -> bool:
    """Passes a cancel on; True, and noted so that it goes once, when Gemini took it or the
    batch had ended anyway (it is then collected as it is). A cancel that did not reach
    Gemini is not noted: the poller sends it again next round."""
    try:
        ctx.batches().cancel(name)
    except GenerationError as exc:
        if not ended_upstream(ctx, name):
            log.warning(
                "job %s: Gemini did not cancel batch %s (again later): %s", job_id, name, exc
            )
            return False
        log.info("job %s: batch %s had ended, nothing to cancel", job_id, name)
    else:
        log.info("job %s: cancelled Gemini batch %s", job_id, name)
    ctx.jobs.ledger.set_info(job_id, cancel_sent="1")
    return True


def ended_upstream(ctx: WorkerContext, name: str) -> bool:
    try:
        return ctx.batches().state(name) in BATCH_DONE_STATES
    except GenerationError as exc:
        return exc.status == 404  # no such batch: nothing runs


def let_go(ctx: WorkerContext, job_id: str, info: dict[str, str] | None = None) -> bool:
    """Does what is left for a batch its job no longer follows (the job ended, or the
    answers were read): a batch still running is cancelled, one created but never recorded
    is looked for upstream, the input file is deleted. True when nothing is left; otherwise
    the job stays with the poller, which tries again next round."""
    info = ctx.jobs.ledger.info(job_id) if info is None else info
    try:
        done = tidy(ctx, job_id, info)
    except GenerationError as exc:
        log.warning("job %s: its Gemini batch is not cleaned up yet (again later): %s", job_id, exc)
        done = False
    if done:
        ctx.jobs.ledger.forget(job_id)
    else:
        ctx.jobs.ledger.wait(job_id)
    return done


def tidy(ctx: WorkerContext, job_id: str, info: dict[str, str]) -> bool:
    name = info.get("name")
    if name is None:
        if info.get("creating"):
            sweep(ctx, job_id)
        return True
    ended = info.get("cancel_sent") or info.get("state") in BATCH_DONE_STATES
    if not ended and not cancel_upstream(ctx, job_id, name):
        return False
    input_file = info.get("input_file")
    if input_file and not info.get("input_deleted"):
        ctx.batches().delete_file(input_file)
        ctx.jobs.ledger.set_info(job_id, input_deleted="1")
        log.info("job %s: deleted the input file %s of batch %s", job_id, input_file, name)
    return True


def sweep(ctx: WorkerContext, job_id: str) -> None:
    """The job ended while its batch was being created, and no batch name was recorded:
    every batch of its display name upstream is cancelled, every input file left deleted."""
    display = batch_display_name(job_id)
    for name, upstream in ctx.batches().find(display):
        if upstream not in BATCH_DONE_STATES:
            ctx.batches().cancel(name)
            log.warning("job %s: cancelled batch %s, created but never recorded", job_id, name)
    for left in ctx.batches().input_files(display):
        ctx.batches().delete_file(left)


def collect_batch(ctx: WorkerContext, job_id: str) -> int:
    """Stores what the finished batch made, item by item; returns the items that succeeded."""
    if not ctx.jobs.start_work(job_id, UPSTREAM, ctx.name):
        let_go(ctx, job_id)  # collected before, or the job was cancelled or ended
        return 0
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    info = ctx.jobs.ledger.info(job_id)
    sources = batch_sources(request, info)
    outcomes = [
        ItemOutcome(index=e.index, errors=[e])
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
    recorded = ctx.jobs.claims.recorded(job_id, sorted(sources))
    for index, gathered in sorted(sources.items()):
        if index in recorded:  # collected before a crash: kept as it was
            outcomes.append(ItemOutcome.model_validate_json(recorded[index]))
            continue
        item = generations[index]
        answered = [
            answer
            for v in range(item.count)
            if (answer := answers.get(request_key(index, v))) is not None
        ]
        if not answered and cancelling:
            continue  # a cancelled job's unanswered items are not failures
        outcome = _collected(ctx, job_id, request, index, gathered, answered, state)
        keep_outcome(ctx, job_id, outcome)
        outcomes.append(outcome)
    log.info("job %s: batch %s ended %s, %d answer(s)", job_id, info["name"], state, len(answers))
    succeeded = report(ctx, job_id, UPSTREAM, outcomes)
    let_go(ctx, job_id)  # the answers are read: the input file goes
    return succeeded


def batch_sources(request: GenerateRequest, info: dict[str, str]) -> dict[int, Gathered]:
    """Each sent item's sources as used, from the ledger (a batch sent before sources were
    kept there names its asset ids only)."""
    if "sources" in info:
        return {
            int(k): Gathered(used=[UsedSource.model_validate(u) for u in used])
            for k, used in json.loads(info["sources"]).items()
        }
    named = {int(k): v for k, v in json.loads(info.get("references", "{}")).items()}
    return {
        index: Gathered(
            used=[
                UsedSource(
                    kind="assets",
                    role="item",
                    collection=request.collection,
                    hits=[SourceHit(asset_id=a, collection=request.collection) for a in ids],
                )
            ]
            if ids
            else []
        )
        for index, ids in named.items()
    }


def _collected(
    ctx: WorkerContext,
    job_id: str,
    request: GenerateRequest,
    index: int,
    gathered: Gathered,
    answered: list[Outcome],
    state: str,
) -> ItemOutcome:
    """What an item of the batch came to: its answers kept, or why it has none."""
    item = request.generations()[index]
    usage = Usage(calls=item.count)
    if not answered:
        message = f"the Gemini batch ended {state} without answering this item"
        error = ItemError(
            index=index, source=f"item:{index}", code=ErrorCode.upstream_error, message=message
        )
        return ItemOutcome(index=index, errors=[error], usage=usage)
    try:
        made = [Made(answer, item.formats[0], gathered.used) for answer in answered]
        return settle_item(ctx, job_id, request, index, item, gathered, made)
    except CodedError as exc:
        error = exc.item_error(index, f"item:{index}")
        return ItemOutcome(index=index, errors=[error], usage=usage)
