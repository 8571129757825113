"""The job store: the one serialisation of a job record in Redis, shared by API and workers.

A job is one Redis hash (`keys.job`); per-item errors, counted batch ids, stored asset ids and
its outstanding work sit beside it. Every change is one atomic step (a transaction or a Lua
script in shared/jobs/scripts.py), so:

- a job and the task that starts it are written together; planned batches and their tasks too;
- a worker starts a piece of work only while it is still wanted (`start_work`), and a batch is
  counted once, however often its task is delivered;
- a job is `completed` exactly when its last batch reports; a cancelled job is `cancelling`
  until the work that had started finishes, then `cancelled` with the final counts;
- a terminal record never changes again;
- the watchdog can tell which work is still outstanding and send it again (`resend_work`).

Beside the lifecycle, three concerns over the same Redis, each a class of its own that the
store holds: the Gemini batch ledger (`ledger`), the webhook outbox (`outbox`) and the
watchdog's audit of outstanding work (`audit`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from pydantic import BaseModel

from shared import keys
from shared.contract import (
    Cluster,
    ErrorInfo,
    ItemError,
    Job,
    JobKind,
    JobState,
    JobSummary,
    Progress,
    Result,
    valid_token,
)
from shared.errors import CodedError
from shared.jobs import scripts as job_scripts
from shared.jobs.audit import JobAudit
from shared.jobs.claims import ItemClaims
from shared.jobs.ledger import BatchLedger
from shared.jobs.outbox import WebhookOutbox
from shared.jobs.records import (
    ANY_TENANT,
    START,
    THEN,
    AnyTenant,
    NewJob,
    WorkEntry,
    maybe_text,
    request_of,
    summary_of,
    tenant_of,
    text,
)
from shared.metrics import JOBS_FINISHED
from shared.tasks import QueuedTask

ERRORS_SHOWN = 1000
ASSET_IDS_SHOWN = 10_000
_SUMMARY_FIELDS = (
    "id",
    "kind",
    "state",
    "total",
    "succeeded",
    "failed",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "tenant",
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class JobStore:
    """Reads and writes job records; every state change publishes an event for waiters."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._create_once = client.register_script(job_scripts.CREATE_ONCE)
        self._start_work = client.register_script(job_scripts.START_WORK)
        self._complete_batch = client.register_script(job_scripts.COMPLETE_BATCH)
        self._finish_script = client.register_script(job_scripts.FINISH)
        self._cancel = client.register_script(job_scripts.CANCEL)
        self._drop_work = client.register_script(job_scripts.DROP_WORK)
        self._hand_over = client.register_script(job_scripts.HAND_OVER)
        self.ledger = BatchLedger(client, self.replace_start)
        self.outbox = WebhookOutbox(client)
        self.audit = JobAudit(client)
        self.claims = ItemClaims(client)

    # ── creating ───────────────────────────────────────────────────────────────────────────

    def create(
        self,
        kind: JobKind,
        request: dict[str, Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
        first_task: Callable[[str], QueuedTask] | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or the job an earlier request with this idempotency key made.

        Returns (job, created). The record and its first task (made from the new job's id)
        are written in one atomic step, so no job exists without the work that runs it, and
        two requests racing with one key get one job. The same key with another body is
        refused (`idempotency_key_reused`).
        """
        new = NewJob.plan(kind, request, tenant, idempotency_key, first_task)
        if idempotency_key is None:
            pipe = self.redis.pipeline(transaction=True)
            new.write(pipe)
            pipe.execute()
            return new.job, True
        names, args = new.create_once_call(self.ttl_s)
        earlier_id = new.earlier(self._create_once(keys=names, args=args))
        return (new.job, True) if earlier_id is None else (self._existing(earlier_id), False)

    async def acreate(
        self,
        kind: JobKind,
        request: dict[str, Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
        first_task: Callable[[str], QueuedTask] | None = None,
    ) -> tuple[Job, bool]:
        """`create` off the event loop (a thread), for an API that must not block."""
        return await asyncio.to_thread(
            self.create, kind, request, tenant, idempotency_key, first_task
        )

    def _existing(self, job_id: str) -> Job:
        found = self.get(job_id)
        if found is None:
            raise CodedError("job_not_found", f"the job of this Idempotency-Key expired: {job_id}")
        return found

    # ── reading ────────────────────────────────────────────────────────────────────────────

    def get(self, job_id: str, tenant: str | None | AnyTenant = ANY_TENANT) -> Job | None:
        """The job; None when it does not exist, or belongs to another tenant than `tenant`
        (when one is given: None means the tenant-less jobs of a service without keys)."""
        if not valid_token(job_id):
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.job(job_id))
        pipe.lrange(keys.job_errors(job_id), 0, ERRORS_SHOWN - 1)
        raw, errors = pipe.execute()
        if not raw:
            return None
        fields = {text(k): text(v) for k, v in raw.items()}
        if tenant is not ANY_TENANT and (fields.get("tenant") or None) != tenant:
            return None
        result = json.loads(fields["result"]) if fields.get("result") else None
        summary = summary_of(fields)
        if summary.kind == JobKind.embed and summary.finished and result is not None:
            result["asset_ids"] = self._asset_ids(job_id, summary.progress.total)
        return Job(
            **summary.model_dump(),
            result=result,
            errors=[ItemError.model_validate_json(e) for e in errors],
        )

    def request(self, job_id: str) -> dict[str, Any]:
        return request_of(self.redis.hget(keys.job(job_id), "request"))

    def submitted(self, job_id: str, shape: type[ModelT]) -> tuple[ModelT, str | None]:
        """What was submitted, as `shape`, and for which tenant: a worker's first step, in
        one read."""
        request, tenant = self.redis.hmget(keys.job(job_id), "request", "tenant")
        return shape.model_validate(request_of(request)), tenant_of(tenant)

    def state(self, job_id: str) -> JobState | None:
        raw = self.redis.hget(keys.job(job_id), "state")
        return JobState(text(raw)) if raw else None

    def tenant(self, job_id: str) -> str | None:
        return tenant_of(self.redis.hget(keys.job(job_id), "tenant"))

    def list_jobs(
        self,
        tenant: str | None,
        kind: JobKind | None = None,
        state: JobState | None = None,
        limit: int = 50,
        cursor: float | None = None,
    ) -> tuple[list[JobSummary], float | None]:
        """Newest first, summaries only; the cursor is the created_at of the last one given."""
        index = keys.job_index(tenant)
        found: list[JobSummary] = []
        upper = f"({cursor}" if cursor is not None else "+inf"
        while True:
            page: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
                index, upper, "-inf", start=0, num=max(limit * 2, 50), withscores=True
            )
            if not page:
                return found, None
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in page:
                pipe.hmget(keys.job(text(member)), _SUMMARY_FIELDS)
            for (member, score), values in zip(page, pipe.execute(), strict=True):
                upper = f"({score}"
                if values[0] is None:
                    self.redis.zrem(index, member)  # the record expired
                    continue
                fields = dict(zip(_SUMMARY_FIELDS, map(maybe_text, values), strict=True))
                summary = summary_of(fields)
                if kind in (None, summary.kind) and state in (None, summary.state):
                    found.append(summary)
                    if len(found) == limit:
                        return found, score

    # ── changing ───────────────────────────────────────────────────────────────────────────

    def start_work(self, job_id: str, work_id: str, worker: str) -> bool:
        """Marks a piece of work started by a worker; False: drop it (done already, cancelled,
        or the job ended). The job turns `running` with its first started work."""
        started = job_scripts.run(self._start_work, job_id, work_id, worker) == 1
        if not started:
            self._settled(job_id)  # dropping the work may have ended a cancelling job
        return started

    def plan(
        self,
        job_id: str,
        total: int,
        batches: list[tuple[str, QueuedTask]],
        result: Result,
        then: QueuedTask | None = None,
        start: str = START,
    ) -> bool:
        """Records the job's size and first result, its batches as outstanding work and their
        tasks, in one transaction, once: a redelivered plan finds the job planned and changes
        nothing. A job cancelled meanwhile gets no batches. `then` is sent when the last
        batch is counted, and ends the job itself."""
        if then is not None and not batches:
            batches, then = [(THEN, then)], None  # nothing to wait for: the last step at once
        fields: dict[Any, Any] = {"total": total, "result": result.model_dump_json()}
        if then is not None:
            fields["then"] = WorkEntry.of(then).dump()
        entries = {work_id: WorkEntry.of(task) for work_id, task in batches}
        sends = [task for _, task in batches]
        return self.replace_start(job_id, fields, entries, sends, start=start)

    def replace_start(
        self,
        job_id: str,
        fields: dict[Any, Any],
        entries: dict[str, WorkEntry],
        send: list[QueuedTask],
        also: Callable[[Any], None] | None = None,
        start: str = START,
    ) -> bool:
        """The job's first task (its work id `start`) hands over to the work it planned, in
        one transaction, once: `fields` onto the record, `entries` as its outstanding work,
        `send` onto their queues, and whatever `also` queues on the same pipeline. False (and
        the first task's work dropped) when the job was planned already or is not running."""
        job_key, work_key = keys.job(job_id), keys.job_work(job_id)
        fields = {"planned": 1, "pending": len(entries), **fields}
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(job_key)
                    state, planned = pipe.hmget(job_key, ["state", "planned"])
                    if planned or maybe_text(state) != JobState.running:
                        pipe.unwatch()
                        self.drop_work(job_id, start)
                        return False
                    pipe.multi()
                    pipe.hset(job_key, mapping=fields)
                    pipe.hdel(work_key, start)
                    for work_id, entry in entries.items():
                        pipe.hset(work_key, work_id, entry.dump())
                    for queue, payloads in _by_queue(send).items():
                        pipe.lpush(queue, *payloads)
                    if also is not None:
                        also(pipe)
                    pipe.zadd(keys.ACTIVE_JOBS, {job_id: time.time()})
                    pipe.publish(keys.events(job_id), "progress")
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def hand_over(self, job_id: str, work_id: str, next_id: str, task: QueuedTask) -> bool:
        """Started work hands over to the next work (`next_id`, run by `task`) without being
        counted; False when there was nothing to hand over (done, dropped, or the job is
        cancelling: then the work is dropped and the job may end)."""
        entry = WorkEntry.of(task).dump()
        args = (work_id, next_id, entry, task.queue, task.payload)
        outcome = job_scripts.run(self._hand_over, job_id, *args)
        if outcome == 2:
            self._settled(job_id)
        return outcome == 1

    def drop_work(self, job_id: str, work_id: str) -> None:
        """Work that ends without counting anything (a plan that finds its job cancelling)."""
        job_scripts.run(self._drop_work, job_id, work_id)
        self._settled(job_id)

    def complete_batch(
        self,
        job_id: str,
        batch_id: str,
        succeeded: int,
        errors: list[ItemError],
        asset_ids: dict[int, str],
        failed: int | None = None,
    ) -> bool:
        """Counts a batch once; returns True when this batch ended the job. `failed` is the
        count of failed items when it differs from the errors reported (a generate item may
        report a failed variant and still succeed)."""
        failed = len(errors) if failed is None else failed
        args: list[Any] = [batch_id, succeeded, failed, len(errors)]
        args += [e.model_dump_json() for e in errors]
        for index, asset_id in asset_ids.items():
            args += [index, asset_id]
        extra = [keys.job_batches(job_id), keys.job_errors(job_id), keys.job_assets(job_id)]
        ended = job_scripts.run(self._complete_batch, job_id, *args, extra_keys=extra) in (1, 2)
        if ended:
            self._expire(job_id)
        return ended

    def complete(
        self,
        job_id: str,
        result: Result,
        progress: Progress | None = None,
        errors: Iterable[ItemError] = (),
    ) -> bool:
        fields: dict[str, Any] = {"result": result.model_dump_json()}
        if progress is not None:
            fields |= progress.model_dump()
        return self._end(job_id, JobState.completed, fields, errors)

    def fail(self, job_id: str, code: str, message: str) -> bool:
        error = ErrorInfo(code=code, message=message).model_dump_json()
        return self._end(job_id, JobState.failed, {"error": error})

    def cancel(self, job_id: str) -> JobState | None:
        """`cancelling` while started work finishes, `cancelled` when none had started;
        None when the job had already ended."""
        outcome = job_scripts.run(self._cancel, job_id)
        if outcome == 2:
            self._expire(job_id)
        return {1: JobState.cancelling, 2: JobState.cancelled}.get(int(outcome))

    def clusters(self, job_id: str, start: int, count: int) -> list[Cluster]:
        """A page of a duplicates job's clusters, largest first."""
        raw = self.redis.lrange(keys.job_clusters(job_id), start, start + count - 1)
        return [Cluster.model_validate_json(item) for item in raw]

    # ── generate jobs: per-item results and Gemini batches ─────────────────────────────────

    def all_errors(self, job_id: str) -> list[ItemError]:
        raw = self.redis.lrange(keys.job_errors(job_id), 0, -1)
        return [ItemError.model_validate_json(e) for e in raw]

    def all_asset_ids(self, job_id: str) -> dict[int, str]:
        stored = self.redis.hgetall(keys.job_assets(job_id))
        return {int(text(k)): text(v) for k, v in stored.items()}

    def set_result(self, job_id: str, result: BaseModel) -> None:
        self.redis.hset(keys.job(job_id), "result", result.model_dump_json())

    # ── plumbing ───────────────────────────────────────────────────────────────────────────

    def _end(
        self,
        job_id: str,
        state: JobState,
        fields: dict[str, Any],
        errors: Iterable[ItemError] = (),
    ) -> bool:
        pairs = [item for pair in fields.items() for item in pair]
        args = [state.value, len(fields), *pairs, *(e.model_dump_json() for e in errors)]
        ended = job_scripts.run(
            self._finish_script, job_id, *args, extra_keys=[keys.job_errors(job_id)]
        )
        if ended:
            self._expire(job_id)
        return bool(ended)

    def _asset_ids(self, job_id: str, total: int) -> list[str | None] | None:
        if total > ASSET_IDS_SHOWN:
            return None
        stored = self.redis.hgetall(keys.job_assets(job_id))
        by_index = {int(text(k)): text(v) for k, v in stored.items()}
        return [by_index.get(i) for i in range(total)]

    def _expire(self, job_id: str) -> None:
        """Called once per job, by the call that ended it: the record starts its TTL and the
        process that ended it (a worker; the API for a cancel) counts it for /metrics. (Its
        webhook became due in the same script that ended it.)"""
        pipe = self.redis.pipeline()
        for key in keys.job_parts(job_id):
            pipe.expire(key, self.ttl_s)
        pipe.hmget(keys.job(job_id), "kind", "state")
        *_, (kind, state) = pipe.execute()
        JOBS_FINISHED.labels(maybe_text(kind) or "?", maybe_text(state) or "?").inc()

    def _settled(self, job_id: str) -> None:
        """After dropping work: if that ended the job (a cancelling job's last work), what
        follows an end."""
        if self.state(job_id) == JobState.cancelled:  # the only end dropping work can bring
            self._expire(job_id)


def _by_queue(tasks: list[QueuedTask]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for task in tasks:
        grouped.setdefault(task.queue, []).append(task.payload)
    return grouped
