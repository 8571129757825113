"""What a worker does beside its tasks, on a period, in background threads: the blob sweep,
the watchdog, the Gemini batch poller and webhook delivery (`start`; default-queue workers).

## The watchdog

What keeps jobs from sticking when workers die or Redis loses writes.

One round runs every `ASSETRAG_WATCHDOG_PERIOD_S` on some default-queue worker (a Redis lock
keeps it to one at a time across the fleet):

1. **Orphaned messages.** A task message a worker took but did not acknowledge stays in
   Celery's `unacked` hash; kombu gives it back only after the visibility timeout (an hour).
   Every live worker publishes the delivery tags it holds with its heartbeat, so a message
   held by no live worker for longer than a grace period is given back to its queue now.
2. **Quiet jobs.** A job whose work showed no sign of life for `ASSETRAG_WORK_QUIET_S` is
   audited against its outstanding work (shared/jobs/store.py): work whose task message exists
   nowhere (no queue holds it, no worker has it; e.g. Redis restarted and lost it) is sent
   again, as a new message; after `ASSETRAG_WORK_ATTEMPTS` sends, or when started work ran
   past `ASSETRAG_TASK_TIMEOUT_S`, its items fail (`work_lost`, `work_timed_out`) so the job
   ends. Work is idempotent (content-hash ids, batches counted once), so a slow but living
   worker that finishes too stores nothing twice.
3. **Re-indexes that stopped short.** A re-index whose job ended without its swap (failed,
   cancelled, abandoned in step 2, its record expired) has the version it was building
   dropped and its mark lifted (workers/reindex.py `sweep`), so no half-built version stays
   listed and writers stop writing it.

## Webhooks

Job webhooks: a POST of the final job when it ends, signed (shared/webhooks.py),
retried with backoff for ASSETRAG_WEBHOOK_RETRY_S after the job ended, each attempt logged.

A job that ends with a webhook is put in a due set (shared/jobs/store.py). Default-queue workers
look at it every half second; a worker claims a due job by removing it, makes one attempt,
and on failure puts it back due after a tenacity backoff (exponential with jitter, up to ten
minutes): retries survive worker restarts and never hold a thread while they wait. The
address is checked again at each attempt (DNS may have changed since the submit), and
redirects are not followed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
import tenacity
from celery import Celery

from shared import keys, webhooks
from shared.contract import ErrorCode
from shared.errors import CodedError
from shared.heartbeats import HEARTBEAT_PERIOD_S
from shared.jobs.records import START, UPSTREAM_RUNNER, WorkEntry
from shared.rules import check_webhook_url
from shared.tasks import EMBED_BATCH, GENERATE_ITEMS, QUEUES, QueuedTask, TaskQueue, decode
from workers import reindex
from workers.context import WorkerContext
from workers.embed import fail_items
from workers.generate_batch import poll_batches

log = logging.getLogger("assetrag.watchdog")
webhook_log = logging.getLogger("assetrag.webhooks")
BACKOFF = tenacity.wait_exponential_jitter(initial=1, max=600, jitter=1)
# How often a default-queue worker looks for webhooks that are due.
WEBHOOK_PERIOD_S = 0.5
# A message is delivered before the worker's next beat lists it: give it that long and more.
ORPHAN_GRACE_S = 3 * HEARTBEAT_PERIOD_S


@dataclass
class Round:
    """What one watchdog round did, for its log line and the tests."""

    restored: list[str] = field(default_factory=list)
    resent: list[tuple[str, str]] = field(default_factory=list)
    abandoned: list[tuple[str, str, str]] = field(default_factory=list)
    # re-index jobs whose half-built version was dropped
    reindexes_cleaned: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.restored or self.resent or self.abandoned or self.reindexes_cleaned)


def run_round(ctx: WorkerContext, restore: Callable[[str], None]) -> Round:
    """One watchdog round; `restore(tag)` gives an unacked message back to its queue."""
    done = Round()
    done.restored = restore_orphans(ctx.redis, restore)
    audit_quiet_jobs(ctx, done)
    done.reindexes_cleaned = reindex.sweep(ctx)
    if done:
        log.warning(
            "watchdog: gave back %d orphaned message(s), sent %d lost task(s) again, "
            "failed %d piece(s) of work: %s; dropped the versions of %d stopped re-index(es)",
            len(done.restored),
            len(done.resent),
            len(done.abandoned),
            done.abandoned,
            len(done.reindexes_cleaned),
        )
    return done


def restore_orphans(client: redis.Redis, restore: Callable[[str], None]) -> list[str]:
    """Gives back unacked messages that no live worker holds; returns their delivery tags."""
    due: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
        keys.UNACKED_INDEX, "-inf", time.time() - ORPHAN_GRACE_S
    )
    candidates = [tag.decode() for tag in due]
    if not candidates:
        return []
    held = held_by_live_workers(client)
    orphans = [tag for tag in candidates if tag not in held]
    for tag in orphans:
        restore(tag)
    return orphans


def held_by_live_workers(client: redis.Redis) -> set[str]:
    """Delivery tags held by workers whose heartbeat is fresh; a dead worker's list goes."""
    held: set[str] = set()
    for name in client.scan_iter(match=keys.HELD_PATTERN, count=100):
        hostname = name.decode().removeprefix(keys.worker_held(""))
        if client.exists(keys.worker(hostname)):
            held |= {tag.decode() for tag in client.smembers(name)}  # type: ignore[union-attr]
        else:
            client.delete(name)
    return held


def audit_quiet_jobs(ctx: WorkerContext, done: Round) -> None:
    settings = ctx.settings
    for job_id in ctx.jobs.audit.quiet_jobs(time.time() - settings.work_quiet_s):
        work = ctx.jobs.audit.work(job_id)
        if ctx.jobs.state(job_id) is None:
            ctx.jobs.audit.forget(job_id)  # the record expired
            continue
        if not work:
            message = "the job has no outstanding work left and did not end"
            ctx.jobs.fail(job_id, ErrorCode.work_lost, message)
            done.abandoned.append((job_id, START, ErrorCode.work_lost))
            continue
        present = ctx.jobs.audit.find_tasks([entry.task_id for entry in work.values()], QUEUES)
        for work_id, entry in work.items():
            check_work(ctx, job_id, work_id, entry, entry.task_id in present, done)
        ctx.jobs.audit.touch(job_id)


def check_work(
    ctx: WorkerContext, job_id: str, work_id: str, entry: WorkEntry, present: bool, done: Round
) -> None:
    settings = ctx.settings
    if (entry.started_by or "").startswith(UPSTREAM_RUNNER):
        return  # a Gemini batch: the batch poller follows it and sends its task when it ends
    running_for = time.time() - entry.started_at if entry.started_at else 0.0
    if present and running_for > settings.task_timeout_s:
        message = f"the work ran {running_for:.0f}s, over ASSETRAG_TASK_TIMEOUT_S"
        abandon(ctx, job_id, work_id, entry, CodedError(ErrorCode.work_timed_out, message))
        done.abandoned.append((job_id, work_id, ErrorCode.work_timed_out))
    elif present:
        return
    elif entry.attempts >= settings.work_attempts:
        message = f"the task carrying this work was lost {entry.attempts + 1} times"
        abandon(ctx, job_id, work_id, entry, CodedError(ErrorCode.work_lost, message))
        done.abandoned.append((job_id, work_id, ErrorCode.work_lost))
    elif ctx.jobs.audit.resend(job_id, work_id, renew(ctx.queue, entry)) >= 0:
        done.resent.append((job_id, work_id))


def renew(queue: TaskQueue, entry: WorkEntry) -> QueuedTask:
    """The same task as a new message (new task id and delivery tag)."""
    name, args = decode(entry.payload)
    return queue.message(name, *args)


def abandon(
    ctx: WorkerContext, job_id: str, work_id: str, entry: WorkEntry, error: CodedError
) -> None:
    """Ends the work without it: a batch's items fail, any other work fails its job."""
    name, args = decode(entry.payload)
    if name == GENERATE_ITEMS:
        errors = [error.item_error(index, f"item:{index}") for index in args[2]]
        ctx.jobs.complete_batch(job_id, work_id, 0, errors, {})
    elif name == EMBED_BATCH:
        fail_items(ctx, job_id, work_id, args[2], error)
    else:  # a job's first or last step, its Gemini batch, or a re-index batch (a version
        # missing a batch is never swapped in: this round's sweep drops it)
        ctx.jobs.fail(job_id, error.code, error.message)


# ── webhooks ────────────────────────────────────────────────────────────────────────────────


def backoff_s(attempt: int) -> float:
    """tenacity's exponential backoff with jitter for the given attempt (1 = the first)."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(BACKOFF(state))


def deliver_due(ctx: WorkerContext, now: float | None = None) -> list[tuple[str, bool]]:
    """One attempt for each webhook that is due (and this worker claims)."""
    done = []
    for job_id in ctx.jobs.outbox.due(time.time() if now is None else now):
        if ctx.jobs.outbox.claim(job_id):
            done.append((job_id, deliver(ctx, job_id)))
    return done


def deliver(ctx: WorkerContext, job_id: str) -> bool:
    settings = ctx.settings
    url = ctx.jobs.outbox.target(job_id)
    job = ctx.jobs.get(job_id)
    if url is None or job is None or not settings.webhook_secret:
        return False
    attempt = ctx.jobs.outbox.attempt(job_id)
    body = webhooks.payload(job)
    try:
        check_webhook_url(url, settings.webhook_allow_hosts)
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
            response = client.post(
                url, content=body, headers=webhooks.headers(settings.webhook_secret, job_id, body)
            )
        if 200 <= response.status_code < 300:
            webhook_log.info("webhook for job %s: attempt %d delivered to %s", job_id, attempt, url)
            return True
        reason = f"HTTP {response.status_code}"
    except (httpx.HTTPError, CodedError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    ended = job.finished_at or time.time()
    if time.time() - ended < settings.webhook_retry_s:
        delay = backoff_s(attempt)
        ctx.jobs.outbox.retry(job_id, time.time() + delay)
        webhook_log.warning(
            "webhook for job %s: attempt %d to %s failed (%s); next in %.1fs",
            job_id,
            attempt,
            url,
            reason,
            delay,
        )
    else:
        webhook_log.error(
            "webhook for job %s: attempt %d to %s failed (%s); giving up after %.0fs",
            job_id,
            attempt,
            url,
            reason,
            settings.webhook_retry_s,
        )
    return False


# ── the duties, on their periods ───────────────────────────────────────────────────────────


class Duties:
    """The background threads of one worker process, stopped together at shutdown."""

    def __init__(self, app: Celery, ctx: WorkerContext) -> None:
        self.app = app
        self.ctx = ctx
        self._stop = threading.Event()

    def start_default(self) -> None:
        """What the default queue's workers do for the fleet."""
        settings = self.ctx.settings
        self.every("blob-sweep", settings.blob_sweep_s, self.sweep_blobs)
        self.every("watchdog", settings.watchdog_period_s, self.watchdog_round)
        self.every("gemini-batches", settings.gemini_batch_poll_s, self.poll_batches)
        # every default worker takes part (each claims its own), so one slow receiver does
        # not hold up the rest of the fleet's
        self.every("webhooks", WEBHOOK_PERIOD_S, self.deliver_webhooks)

    def every(self, name: str, period_s: float, duty: Callable[[], None]) -> None:
        """Runs a duty every period until shutdown; a failure is logged, not fatal."""

        def loop() -> None:
            while not self._stop.wait(period_s):
                try:
                    duty()
                except Exception:
                    log.exception("%s failed; trying again in %.0fs", name, period_s)

        threading.Thread(target=loop, name=f"assetrag-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def deliver_webhooks(self) -> None:
        deliver_due(self.ctx)

    def sweep_blobs(self) -> None:
        """Deletes blobs whose record expired."""
        while self.ctx.expiry.sweep():
            pass

    def watchdog_round(self) -> None:
        ctx = self.ctx
        lock = ctx.redis.lock(keys.WATCHDOG_LOCK, timeout=ctx.settings.watchdog_period_s * 6)
        if not lock.acquire(blocking=False):
            return  # another worker's watchdog runs this round
        try:
            with self._broker_restorer() as restore:
                run_round(ctx, restore)
        finally:
            lock.release()

    def poll_batches(self) -> None:
        """Asks Gemini about the fleet's waiting batches; one worker at a time."""
        ctx = self.ctx
        lock = ctx.redis.lock(keys.BATCH_POLL_LOCK, timeout=ctx.settings.gemini_batch_poll_s * 6)
        if not lock.acquire(blocking=False):
            return
        try:
            poll_batches(ctx)
        finally:
            lock.release()

    @contextmanager
    def _broker_restorer(self) -> Iterator[Callable[[str], None]]:
        with self.app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            # kombu's own restore: the message goes back to its queue and out of `unacked`.
            yield lambda tag: channel.qos.restore_by_tag(tag)
