"""The watchdog's round on a real Redis: orphaned messages given back, lost work sent again,
work lost too often or running too long failed so the job ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import keys
from shared.contract import GenerateRequest, GenerateResult, JobKind, JobState
from shared.heartbeats import WorkerHeartbeat
from shared.jobs.records import START
from shared.settings import Settings
from shared.tasks import (
    COLLECT_BATCH,
    EMBED_BATCH,
    FINISH_GENERATE,
    GENERATE_ITEMS,
    QUEUES,
    RUN_SEARCH,
    QueuedTask,
)
from tests.support.images import write_images
from tests.support.inline import submit, take
from workers.background import Round, audit_quiet_jobs, restore_orphans
from workers.context import WorkerContext, build_context
from workers.embed import plan_embed
from workers.generate import plan_items


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    quick = settings.model_copy(update={"work_quiet_s": 0.0, "work_attempts": 2})
    context = build_context(quick)
    yield context
    context.close()


def test_messages_held_by_no_live_worker_are_given_back(ctx: WorkerContext) -> None:
    old = time.time() - 60
    ctx.redis.zadd(keys.UNACKED_INDEX, {"t-live": old, "t-dead": old, "t-fresh": time.time()})
    heartbeat = WorkerHeartbeat(ctx.redis)
    heartbeat.beat("alive@host", ["embed"], {"t-live"})
    heartbeat.hold("gone@host", "t-dead")  # no heartbeat: this worker died
    restored: list[str] = []
    assert restore_orphans(ctx.redis, restored.append) == ["t-dead"] == restored
    assert not ctx.redis.exists(keys.worker_held("gone@host"))
    assert ctx.redis.exists(keys.worker_held("alive@host"))


def embed_job(ctx: WorkerContext, library_path: str) -> str:
    job_id = submit(ctx, JobKind.embed, {"collection": "wd", "directory": {"path": library_path}})
    [(_, args)] = take(ctx)
    assert plan_embed(ctx, *args) == 2
    return job_id


def test_lost_batches_are_sent_again_then_fail_with_a_clear_code(
    ctx: WorkerContext, library: Path
) -> None:
    write_images(library / "wd", 12)
    job_id = embed_job(ctx, str(library / "wd"))
    lost = take(ctx)  # Redis lost both batch messages
    assert [name for name, _ in lost] == [EMBED_BATCH] * 2

    done = Round()
    audit_quiet_jobs(ctx, done)
    assert sorted(w for _, w in done.resent) == ["b0", "b1"]
    again = take(ctx)
    assert sorted(args[1] for _, args in again) == ["b0", "b1"], "sent again as new messages"
    assert all(entry.attempts == 1 for entry in ctx.jobs.audit.work(job_id).values())

    audit_quiet_jobs(ctx, done := Round())  # lost again: a second send (work_attempts = 2)
    take(ctx)
    audit_quiet_jobs(ctx, done := Round())  # and again: the items fail
    assert sorted(w for _, w, _ in done.abandoned) == ["b0", "b1"]
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.completed, job
    assert job.progress.failed == 12 and {e.code for e in job.errors} == {"work_lost"}


def test_present_work_is_left_alone_and_overlong_work_fails(ctx: WorkerContext) -> None:
    job_id = submit(ctx, JobKind.search, {"collection": "c", "queries": [{"text": "x"}]})
    audit_quiet_jobs(ctx, done := Round())
    assert not done, "its message waits in the query queue"
    [(name, args)] = take(ctx)
    assert name == RUN_SEARCH and ctx.jobs.start_work(job_id, START, "w1")
    held = ctx.jobs.audit.work(job_id)[START].task_id
    ctx.redis.hset(keys.UNACKED, "tag", f'[{{"headers": {{"id": "{held}"}}}}]')
    audit_quiet_jobs(ctx, done := Round())
    assert not done, "a worker holds it"
    slow = ctx.settings.model_copy(update={"task_timeout_s": 0.0})
    ctx.settings = slow
    audit_quiet_jobs(ctx, done := Round())
    assert done.abandoned == [(job_id, START, "work_timed_out")]
    job = ctx.jobs.get(job_id)
    assert job is not None and job.state == JobState.failed
    assert job.error is not None and job.error.code == "work_timed_out"
    assert not any(ctx.redis.llen(q) for q in QUEUES)


def test_lost_generate_items_fail_and_a_gemini_batch_is_left_to_its_poller(
    ctx: WorkerContext,
) -> None:
    request = {"collection": "g", "items": [{"prompt": f"p{i}"} for i in range(3)]}
    job_id = submit(ctx, JobKind.generate, request)
    take(ctx)
    assert ctx.jobs.start_work(job_id, START, "w1")
    assert plan_items(ctx, job_id, GenerateRequest.model_validate(request)) == 1
    assert [name for name, _ in take(ctx)] == [GENERATE_ITEMS]  # lost
    for _ in range(3):  # sent again twice (work_attempts = 2), then its items fail
        audit_quiet_jobs(ctx, done := Round())
        take(ctx)
    assert [w for _, w, _ in done.abandoned] == ["g0"]
    then = ctx.jobs.audit.work(job_id)  # every item counted: the last step was sent
    assert list(then) == ["then"]
    job = ctx.jobs.get(job_id)
    assert job is not None and job.progress.failed == 3
    assert sorted(e.index for e in job.errors) == [0, 1, 2]

    waiting = submit(ctx, JobKind.generate, {"collection": "g", "prompt": "p", "mode": "batch"})
    take(ctx)
    assert ctx.jobs.start_work(waiting, START, "w1")
    collect: QueuedTask = ctx.queue.message(COLLECT_BATCH, waiting)
    then_task = ctx.queue.message(FINISH_GENERATE, waiting)
    result = GenerateResult(images=[], text="", references=[], model="m", mode="batch")
    assert ctx.jobs.ledger.await_upstream(
        waiting, "upstream", collect, 1, result, then_task, {"name": "batches/x"}
    )
    audit_quiet_jobs(ctx, done := Round())
    assert not [w for j, w in done.resent if j == waiting]
    assert not [w for j, w, _ in done.abandoned if j == waiting]
    assert ctx.jobs.state(waiting) == JobState.running
    assert [args[0] for _, args in take(ctx)] == [job_id]  # only the first job's last step
