"""The job store on a real Redis: states, counting batches once, listing, expiry."""

from __future__ import annotations

import redis

from shared.jobs import ItemError, JobKind, JobState, JobStore, valid_job_id


def store(client: redis.Redis, ttl: int = 3600) -> JobStore:
    return JobStore(client, ttl)


def test_ids_are_unguessable_and_checked(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    ids = {jobs.create(JobKind.search, {}).id for _ in range(50)}
    assert len(ids) == 50 and all(valid_job_id(i) and len(i) >= 24 for i in ids)
    assert jobs.get("../../etc") is None and jobs.get("x" * 200) is None


def test_job_completes_only_when_the_last_batch_reports(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job = jobs.create(JobKind.embed, {"collection": "c"})
    assert jobs.mark_running(job.id)
    assert jobs.set_plan(job.id, total=5, batches=3)
    assert not jobs.set_plan(job.id, total=5, batches=3), "a redelivered plan does not reset"
    error = ItemError(index=4, source="x", code="corrupt_image", message="bad")
    assert not jobs.complete_batch(job.id, "0", 2, [], {0: "a", 1: "b"})
    assert not jobs.complete_batch(job.id, "0", 2, [], {0: "a", 1: "b"}), "redelivery counted once"
    assert not jobs.complete_batch(job.id, "1", 1, [error], {2: "c"})
    assert jobs.get(job.id).state == JobState.running  # type: ignore[union-attr]
    assert jobs.complete_batch(job.id, "2", 1, [], {3: "d"})
    done = jobs.get(job.id)
    assert done is not None and done.state == JobState.completed
    assert done.progress.model_dump() == {"total": 5, "succeeded": 4, "failed": 1}
    assert done.errors == [error]
    assert done.finished_at is not None and done.started_at is not None
    assert redis_client.ttl(f"assetrag:job:{job.id}") > 0, "finished jobs expire"


def test_cancel_is_final_and_late_batches_do_not_revive(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job = jobs.create(JobKind.embed, {})
    jobs.set_plan(job.id, 2, 2)
    assert jobs.cancel(job.id)
    assert not jobs.cancel(job.id)
    jobs.complete_batch(job.id, "0", 1, [], {})
    jobs.complete_batch(job.id, "1", 1, [], {})
    assert jobs.state(job.id) == JobState.cancelled
    assert not jobs.mark_running(job.id)


def test_fail_records_the_error(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    job = jobs.create(JobKind.generate, {})
    assert jobs.fail(job.id, "blocked", "SAFETY")
    failed = jobs.get(job.id)
    assert failed is not None and failed.error is not None and failed.error.code == "blocked"


def test_list_newest_first_with_filters_and_cursor(redis_client: redis.Redis) -> None:
    jobs = store(redis_client)
    made = [jobs.create(JobKind.search if i % 2 else JobKind.embed, {}) for i in range(7)]
    jobs.cancel(made[-1].id)
    page, cursor = jobs.list_jobs(limit=3)
    assert [j.id for j in page] == [j.id for j in reversed(made)][:3]
    rest, end = jobs.list_jobs(limit=10, cursor=cursor)
    assert [j.id for j in page + rest] == [j.id for j in reversed(made)] and end is None
    searches, _ = jobs.list_jobs(kind=JobKind.search)
    assert {j.id for j in searches} == {j.id for j in made if j.kind == JobKind.search}
    cancelled, _ = jobs.list_jobs(state=JobState.cancelled)
    assert [j.id for j in cancelled] == [made[-1].id]
    assert jobs.list_jobs(tenant="other")[0] == []
