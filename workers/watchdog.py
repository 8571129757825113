"""The watchdog: what keeps jobs from sticking when workers die or Redis loses writes.

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from shared import keys
from shared.contract import ErrorCode
from shared.errors import CodedError
from shared.heartbeats import HEARTBEAT_PERIOD_S
from shared.jobs.records import START, UPSTREAM_RUNNER, WorkEntry
from shared.tasks import EMBED_BATCH, GENERATE_ITEMS, QUEUES, QueuedTask, TaskQueue, decode
from workers.context import WorkerContext
from workers.embed import fail_items

log = logging.getLogger("assetrag.watchdog")
# A message is delivered before the worker's next beat lists it: give it that long and more.
ORPHAN_GRACE_S = 3 * HEARTBEAT_PERIOD_S


@dataclass
class Round:
    """What one watchdog round did, for its log line and the tests."""

    restored: list[str] = field(default_factory=list)
    resent: list[tuple[str, str]] = field(default_factory=list)
    abandoned: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.restored or self.resent or self.abandoned)


def run_round(ctx: WorkerContext, restore: Callable[[str], None]) -> Round:
    """One watchdog round; `restore(tag)` gives an unacked message back to its queue."""
    done = Round()
    done.restored = restore_orphans(ctx.redis, restore)
    audit_quiet_jobs(ctx, done)
    if done:
        log.warning(
            "watchdog: gave back %d orphaned message(s), sent %d lost task(s) again, "
            "failed %d piece(s) of work: %s",
            len(done.restored),
            len(done.resent),
            len(done.abandoned),
            done.abandoned,
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
    else:  # a job's first or last step, or its Gemini batch
        ctx.jobs.fail(job_id, error.code, error.message)
