"""The job store on a real Redis: states, counting batches once, idempotent creation, listing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from shared import keys
from shared.contract import (
    EmbedResult,
    ItemError,
    Job,
    JobKind,
    JobState,
    Progress,
    SearchResult,
    valid_token,
)
from shared.errors import CodedError
from shared.jobs.records import START, THEN
from shared.jobs.store import JobStore
from shared.tasks import QueuedTask


def store(client: redis.Redis, ttl: int = 3600) -> JobStore:
    return JobStore(client, ttl)


def task_for(job_id: str) -> QueuedTask:
    return QueuedTask("test-queue", job_id)


def test_ids_are_unguessable_and_checked(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    ids = {jobs.create(JobKind.search, {})[0].id for _ in range(50)}
    assert len(ids) == 50 and all(valid_token(i) and len(i) >= 24 for i in ids)
    assert jobs.get("../../etc") is None and jobs.get("x" * 200) is None


def planned(jobs: JobStore, batches: int = 3) -> Job:
    """A running embed job planned into `batches` batches (their tasks on `test-queue`)."""
    job, _ = jobs.create(JobKind.embed, {"collection": "c"}, first_task=task_for)
    assert jobs.start_work(job.id, START, "w1")
    tasks = [(f"b{n}", task_for(f"{job.id}-b{n}")) for n in range(batches)]
    assert jobs.plan(job.id, batches * 2, tasks, EmbedResult(collection="c"))
    return job


def test_job_completes_only_when_the_last_batch_reports(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job = planned(jobs)
    tasks = [(f"b{n}", task_for("again")) for n in range(3)]
    assert not jobs.plan(job.id, 6, tasks, EmbedResult(collection="c")), "planned once"
    assert redis_client.llen("test-queue") == 1 + 3, "the first task and three batches"
    error = ItemError(index=4, source="x", code="corrupt_image", message="bad")
    assert jobs.start_work(job.id, "b0", "w1")
    assert not jobs.complete_batch(job.id, "b0", 2, [], {0: "a", 1: "b"})
    assert not jobs.complete_batch(job.id, "b0", 2, [], {0: "a", 1: "b"}), "counted once"
    assert not jobs.start_work(job.id, "b0", "w2"), "a counted batch delivered again is dropped"
    assert not jobs.complete_batch(job.id, "b1", 1, [error], {2: "c"})
    assert jobs.get(job.id).state == JobState.running  # type: ignore[union-attr]
    assert jobs.complete_batch(job.id, "b2", 2, [], {4: "d", 5: "e"})
    done = jobs.get(job.id)
    assert done is not None and done.state == JobState.completed
    assert done.progress.model_dump() == {"total": 6, "succeeded": 5, "failed": 1}
    assert done.errors == [error]
    assert done.result == EmbedResult(collection="c", asset_ids=["a", "b", "c", None, "d", "e"])
    assert done.finished_at is not None and done.started_at is not None
    assert redis_client.ttl(keys.job(job.id)) > 0, "finished jobs expire"
    assert not jobs.audit.work(job.id) and job.id not in jobs.audit.quiet_jobs(time.time() + 1)


def test_a_last_step_is_sent_after_the_last_batch_and_ends_the_job(
    redis_client: redis.Redis,
) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.reindex, {"collection": "c"}, first_task=task_for)
    assert jobs.start_work(job.id, START, "w1")
    tasks = [(f"b{n}", task_for(f"{job.id}-b{n}")) for n in range(2)]
    last = QueuedTask("last-queue", "swap", "t-swap")
    assert jobs.plan(job.id, 4, tasks, EmbedResult(collection="c"), then=last)
    assert redis_client.llen("last-queue") == 0
    assert not jobs.complete_batch(job.id, "b0", 2, [], {})
    assert not jobs.complete_batch(job.id, "b1", 2, [], {}), "the last step is still to run"
    assert redis_client.lrange("last-queue", 0, -1) == [b"swap"]
    assert set(jobs.audit.work(job.id)) == {THEN}
    assert jobs.get(job.id).state == JobState.running  # type: ignore[union-attr]
    assert jobs.start_work(job.id, THEN, "w2")
    assert jobs.complete(job.id, EmbedResult(collection="done"))
    done = jobs.get(job.id)
    assert done is not None and done.state == JobState.completed
    assert done.progress.succeeded == 4 and not jobs.audit.work(job.id)


def test_a_last_step_with_no_batches_is_sent_at_once(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.duplicates, {"collection": "c"}, first_task=task_for)
    assert jobs.start_work(job.id, START, "w1")
    last = QueuedTask("last-queue-2", "cluster", "t-c")
    assert jobs.plan(job.id, 0, [], EmbedResult(collection="c"), then=last)
    assert redis_client.lrange("last-queue-2", 0, -1) == [b"cluster"]
    assert set(jobs.audit.work(job.id)) == {THEN}


def test_cancel_lets_started_work_finish_then_ends_with_its_counts(
    redis_client: redis.Redis,
) -> None:
    jobs = store(redis_client)
    job = planned(jobs)
    assert jobs.start_work(job.id, "b0", "w1")
    assert jobs.cancel(job.id) == JobState.cancelling
    assert set(jobs.audit.work(job.id)) == {"b0"}, "work not started is dropped at once"
    assert not jobs.start_work(job.id, "b1", "w2"), "a dropped batch delivered later is dropped"
    assert jobs.get(job.id).state == JobState.cancelling  # type: ignore[union-attr]
    assert jobs.complete_batch(job.id, "b0", 2, [], {0: "a", 1: "b"}), "the last started work"
    done = jobs.get(job.id)
    assert done is not None and done.state == JobState.cancelled
    assert done.progress.succeeded == 2 and done.finished_at is not None
    assert jobs.cancel(job.id) is None
    jobs.complete_batch(job.id, "b1", 2, [], {2: "c", 3: "d"})
    jobs.fail(job.id, "internal_error", "late")
    after = jobs.get(job.id)
    assert after is not None and after.model_dump() == done.model_dump(), "terminal is final"


def test_cancel_before_anything_started_ends_at_once(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.search, {}, first_task=task_for)
    assert jobs.cancel(job.id) == JobState.cancelled
    assert not jobs.start_work(job.id, START, "w1")


def test_a_job_that_runs_as_one_task_ends_cancelled_when_cancelled_while_running(
    redis_client: redis.Redis,
) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.search, {}, first_task=task_for)
    assert jobs.start_work(job.id, START, "w1")
    assert jobs.cancel(job.id) == JobState.cancelling
    assert jobs.complete(job.id, SearchResult(results=[]), Progress(total=1, succeeded=1))
    done = jobs.get(job.id)
    assert done is not None and done.state == JobState.cancelled and done.progress.succeeded == 1


def test_a_plan_that_finds_its_job_cancelling_ends_it(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.embed, {}, first_task=task_for)
    assert jobs.start_work(job.id, START, "w1")
    assert jobs.cancel(job.id) == JobState.cancelling
    assert not jobs.plan(job.id, 2, [("b0", task_for("x"))], EmbedResult(collection="c"))
    assert jobs.state(job.id) == JobState.cancelled
    assert redis_client.llen("test-queue") == 1, "no batches were sent"


def test_lost_work_can_be_sent_again_while_it_is_outstanding(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job = planned(jobs, batches=2)
    redis_client.delete("test-queue")  # as if Redis lost the messages
    assert jobs.audit.quiet_jobs(time.time() + 1) == [job.id]
    entry = jobs.audit.work(job.id)["b1"]
    assert entry.attempts == 0 and entry.started_by is None
    assert jobs.audit.resend(job.id, "b1", task_for("b1-again")) == 1
    assert redis_client.lrange("test-queue", 0, -1) == [b"b1-again"]
    jobs.complete_batch(job.id, "b1", 2, [], {})
    assert jobs.audit.resend(job.id, "b1", task_for("b1-again")) == -1, "done work is not resent"


def test_fail_records_the_error(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.generate, {})
    assert jobs.fail(job.id, "blocked", "SAFETY")
    failed = jobs.get(job.id)
    assert failed is not None and failed.error is not None and failed.error.code == "blocked"


def test_one_idempotency_key_makes_one_job_even_under_a_race(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    body = {"collection": "c", "queries": [{"text": "x"}]}

    def create(tenant: str, body: dict[str, object]) -> tuple[Job, bool]:
        return jobs.create(JobKind.search, body, tenant, "key-1", task_for)

    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(lambda _: create("t", body), range(64)))
    assert len({job.id for job, _ in made}) == 1
    assert sum(created for _, created in made) == 1
    assert redis_client.lrange("test-queue", 0, -1) == [made[0][0].id.encode()], "one task"
    with pytest.raises(CodedError) as refused:
        create("t", {**body, "top_k": 3})
    assert refused.value.code == "idempotency_key_reused"
    other_tenant, created = create("u", body)
    assert created and other_tenant.id != made[0][0].id


def test_a_job_and_its_first_task_are_written_together(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, created = jobs.create(JobKind.search, {}, first_task=task_for)
    assert created and redis_client.lrange("test-queue", 0, -1) == [job.id.encode()]


def test_tenants_see_only_their_own_jobs(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job, _ = jobs.create(JobKind.search, {}, tenant="alpha")
    assert jobs.get(job.id, "alpha") is not None
    assert jobs.get(job.id, "beta") is None and jobs.get(job.id, None) is None
    assert [j.id for j in jobs.list_jobs("alpha")[0]] == [job.id]
    assert jobs.list_jobs("beta")[0] == [] and jobs.list_jobs(None)[0] == []


def test_list_newest_first_as_summaries_with_filters_and_cursor(
    redis_client: redis.Redis,
) -> None:
    jobs = store(redis_client)
    made = [jobs.create(JobKind.search if i % 2 else JobKind.embed, {})[0] for i in range(7)]
    assert jobs.cancel(made[-1].id) == JobState.cancelled
    page, cursor = jobs.list_jobs(None, limit=3)
    assert [j.id for j in page] == [j.id for j in reversed(made)][:3]
    assert not hasattr(page[0], "result"), "lists carry summaries, not results"
    rest, end = jobs.list_jobs(None, limit=10, cursor=cursor)
    assert [j.id for j in page + rest] == [j.id for j in reversed(made)] and end is None
    searches, _ = jobs.list_jobs(None, kind=JobKind.search)
    assert {j.id for j in searches} == {j.id for j in made if j.kind == JobKind.search}
    cancelled, _ = jobs.list_jobs(None, state=JobState.cancelled)
    assert [j.id for j in cancelled] == [made[-1].id]


def test_a_jobs_end_and_its_webhook_are_one_step(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook is due even when the process dies right after the script that ended the
    job (nothing after it runs: here, what follows an end is skipped)."""
    jobs = store(redis_client)
    monkeypatch.setattr(jobs, "_expire", lambda job_id: None)
    job, _ = jobs.create(JobKind.search, {"webhook": "http://127.0.0.1/hook"}, first_task=task_for)
    plain, _ = jobs.create(JobKind.search, {}, first_task=task_for)
    for created in (job, plain):
        assert jobs.start_work(created.id, START, "w1")
        assert jobs.complete(created.id, SearchResult(results=[]))
    assert jobs.outbox.due(time.time() + 1) == [job.id]
    # a terminal record never changes, so the end (and its webhook) happens once
    assert not jobs.fail(job.id, "x", "y")
    assert redis_client.zcard(keys.WEBHOOKS_DUE) == 1
