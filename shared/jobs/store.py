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
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
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
from shared.metrics import JOBS_FINISHED
from shared.tasks import QueuedTask

ERRORS_SHOWN = 1000
ASSET_IDS_SHOWN = 10_000
START = "start"  # the work id of a job's first task (an embed plan, a search, a generation)
UPSTREAM_RUNNER = "gemini:"  # who `started` work that runs as a Gemini batch
THEN = "then"  # the work id of a job's last step, sent once every batch is counted (Lua too)
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


class WorkEntry(BaseModel):
    """One piece of a job's outstanding work, as the work hash keeps it."""

    queue: str
    payload: str
    task_id: str
    attempts: int = 0
    sent_at: float | None = None
    started_by: str | None = None
    started_at: float | None = None

    @classmethod
    def of(cls, task: QueuedTask) -> WorkEntry:
        return cls(
            queue=task.queue, payload=task.payload, task_id=task.task_id, sent_at=time.time()
        )

    def dump(self) -> str:
        # No nulls: Lua's cjson turns null into a value that is not nil.
        return self.model_dump_json(exclude_none=True)


class _AnyTenant:
    pass


ANY_TENANT = _AnyTenant()


def new_job_id() -> str:
    return secrets.token_urlsafe(18)


def body_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


@dataclass
class _NewJob:
    """A job about to be created: its record and first task, written by either client."""

    job: Job
    fields: dict[Any, Any]
    tenant: str | None
    task: QueuedTask | None
    idempotency_key: str | None
    digest: str

    @classmethod
    def plan(
        cls,
        kind: JobKind,
        request: dict[str, Any],
        tenant: str | None,
        idempotency_key: str | None,
        first_task: Callable[[str], QueuedTask] | None,
    ) -> _NewJob:
        job = Job(id=new_job_id(), kind=kind, state=JobState.queued, created_at=time.time())
        fields = {
            "id": job.id,
            "kind": kind.value,
            "state": job.state.value,
            "created_at": job.created_at,
            "tenant": tenant or "",
            "total": 0,
            "succeeded": 0,
            "failed": 0,
            "pending": 0,
            "request": json.dumps(request),
        }
        if request.get("webhook"):
            fields["webhook"] = request["webhook"]
        task = first_task(job.id) if first_task is not None else None
        digest = body_hash(request) if idempotency_key is not None else ""
        return cls(job, fields, tenant, task, idempotency_key, digest)

    def write(self, pipe: Any) -> None:
        """Queue the writes on a (sync or asyncio) transaction pipeline."""
        job_id, created_at = self.job.id, self.job.created_at
        pipe.hset(keys.job(job_id), mapping=self.fields)
        pipe.zadd(keys.job_index(self.tenant), {job_id: created_at})
        pipe.zadd(keys.ACTIVE_JOBS, {job_id: created_at})
        if self.task is not None:
            pipe.hset(keys.job_work(job_id), START, WorkEntry.of(self.task).dump())
            pipe.lpush(self.task.queue, self.task.payload)

    def create_once_call(self, ttl_s: int) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the _CREATE_ONCE script."""
        if self.task is None or self.idempotency_key is None:
            raise ValueError("an idempotent create needs its key and its first task")
        job_id = self.job.id
        names = [
            keys.idempotency(self.tenant, self.idempotency_key),
            keys.job(job_id),
            keys.job_index(self.tenant),
            self.task.queue,
            keys.job_work(job_id),
            keys.ACTIVE_JOBS,
        ]
        pairs = [item for pair in self.fields.items() for item in pair]
        entry = WorkEntry.of(self.task).dump()
        args = [job_id, self.digest, ttl_s, self.job.created_at, self.task.payload, entry, *pairs]
        return names, args

    def earlier(self, answer: bytes | str | None) -> str | None:
        """The id of the job an earlier request made with this key (None: this one is new)."""
        if answer is None:
            return None
        earlier_id, earlier_digest = _text(answer).split(" ", 1)
        if earlier_digest != self.digest:
            raise CodedError(
                "idempotency_key_reused", "this Idempotency-Key was used with another body"
            )
        return earlier_id


class JobStore:
    """Reads and writes job records; every state change publishes an event for waiters."""

    def __init__(
        self, client: redis.Redis, ttl_s: int, aclient: redis.asyncio.Redis | None = None
    ) -> None:
        self.redis = client
        self.aredis = aclient
        self.ttl_s = ttl_s
        self._create_once = client.register_script(job_scripts.CREATE_ONCE)
        self._acreate_once = aclient.register_script(job_scripts.CREATE_ONCE) if aclient else None
        self._start_work = client.register_script(job_scripts.START_WORK)
        self._complete_batch = client.register_script(job_scripts.COMPLETE_BATCH)
        self._finish_script = client.register_script(job_scripts.FINISH)
        self._cancel = client.register_script(job_scripts.CANCEL)
        self._resend_work = client.register_script(job_scripts.RESEND_WORK)
        self._drop_work = client.register_script(job_scripts.DROP_WORK)
        self._find_tasks = client.register_script(job_scripts.FIND_TASKS)

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
        new = _NewJob.plan(kind, request, tenant, idempotency_key, first_task)
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
        """`create` on the asyncio client, for an event loop that must not block."""
        if self._acreate_once is None or self.aredis is None:
            raise RuntimeError("this JobStore has no asyncio client")
        new = _NewJob.plan(kind, request, tenant, idempotency_key, first_task)
        if idempotency_key is None:
            pipe = self.aredis.pipeline(transaction=True)
            new.write(pipe)
            await pipe.execute()
            return new.job, True
        names, args = new.create_once_call(self.ttl_s)
        earlier_id = new.earlier(await self._acreate_once(keys=names, args=args))
        if earlier_id is None:
            return new.job, True
        return await asyncio.to_thread(self._existing, earlier_id), False

    def _existing(self, job_id: str) -> Job:
        found = self.get(job_id)
        if found is None:
            raise CodedError("job_not_found", f"the job of this Idempotency-Key expired: {job_id}")
        return found

    # ── reading ────────────────────────────────────────────────────────────────────────────

    def get(self, job_id: str, tenant: str | None | _AnyTenant = ANY_TENANT) -> Job | None:
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
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if tenant is not ANY_TENANT and (fields.get("tenant") or None) != tenant:
            return None
        result = json.loads(fields["result"]) if fields.get("result") else None
        summary = _summary(fields)
        if summary.kind == JobKind.embed and summary.finished and result is not None:
            result["asset_ids"] = self._asset_ids(job_id, summary.progress.total)
        return Job(
            **summary.model_dump(),
            result=result,
            errors=[ItemError.model_validate_json(e) for e in errors],
        )

    def request(self, job_id: str) -> dict[str, Any]:
        return _request_of(self.redis.hget(keys.job(job_id), "request"))

    def submitted(self, job_id: str, shape: type[ModelT]) -> tuple[ModelT, str | None]:
        """What was submitted, as `shape`, and for which tenant: a worker's first step, in
        one read."""
        request, tenant = self.redis.hmget(keys.job(job_id), "request", "tenant")
        return shape.model_validate(_request_of(request)), _tenant_of(tenant)

    def state(self, job_id: str) -> JobState | None:
        raw = self.redis.hget(keys.job(job_id), "state")
        return JobState(_text(raw)) if raw else None

    def tenant(self, job_id: str) -> str | None:
        return _tenant_of(self.redis.hget(keys.job(job_id), "tenant"))

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
                pipe.hmget(keys.job(_text(member)), _SUMMARY_FIELDS)
            for (member, score), values in zip(page, pipe.execute(), strict=True):
                upper = f"({score}"
                if values[0] is None:
                    self.redis.zrem(index, member)  # the record expired
                    continue
                fields = dict(zip(_SUMMARY_FIELDS, map(_maybe_text, values), strict=True))
                summary = _summary(fields)
                if kind in (None, summary.kind) and state in (None, summary.state):
                    found.append(summary)
                    if len(found) == limit:
                        return found, score

    # ── changing ───────────────────────────────────────────────────────────────────────────

    def start_work(self, job_id: str, work_id: str, worker: str) -> bool:
        """Marks a piece of work started by a worker; False: drop it (done already, cancelled,
        or the job ended). The job turns `running` with its first started work."""
        started = self._script(self._start_work, job_id, work_id, worker) == 1
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
    ) -> bool:
        """Records the job's size and first result, its batches as outstanding work and their
        tasks, in one transaction, once: a redelivered plan finds the job planned and changes
        nothing. A job cancelled meanwhile gets no batches. `then` is sent when the last
        batch is counted, and ends the job itself."""
        if then is not None and not batches:
            batches, then = [(THEN, then)], None  # nothing to wait for: the last step at once
        job_key, work_key = keys.job(job_id), keys.job_work(job_id)
        fields: dict[Any, Any] = {
            "planned": 1,
            "total": total,
            "pending": len(batches),
            "result": result.model_dump_json(),
        }
        if then is not None:
            fields["then"] = WorkEntry.of(then).dump()
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(job_key)
                    state, planned = pipe.hmget(job_key, ["state", "planned"])
                    if planned or _maybe_text(state) != JobState.running:
                        pipe.unwatch()
                        self._script(self._drop_work, job_id, START)
                        self._settled(job_id)
                        return False
                    pipe.multi()
                    pipe.hset(job_key, mapping=fields)
                    pipe.hdel(work_key, START)
                    for work_id, task in batches:
                        pipe.hset(work_key, work_id, WorkEntry.of(task).dump())
                    for queue, payloads in _by_queue(batches).items():
                        pipe.lpush(queue, *payloads)
                    pipe.zadd(keys.ACTIVE_JOBS, {job_id: time.time()})
                    pipe.publish(keys.events(job_id), "progress")
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

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
        ended = self._script(self._complete_batch, job_id, *args, extra_keys=extra) in (1, 2)
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
        outcome = self._script(self._cancel, job_id)
        if outcome == 2:
            self._expire(job_id)
        return {1: JobState.cancelling, 2: JobState.cancelled}.get(int(outcome))

    def clusters(self, job_id: str, start: int, count: int) -> list[Cluster]:
        """A page of a duplicates job's clusters, largest first."""
        raw = self.redis.lrange(keys.job_clusters(job_id), start, start + count - 1)
        return [Cluster.model_validate_json(item) for item in raw]

    # ── generate jobs: per-item results and Gemini batches ─────────────────────────────────

    def put_item(self, job_id: str, index: int, item: BaseModel) -> None:
        self.redis.hset(keys.job_items(job_id), str(index), item.model_dump_json())

    def items(self, job_id: str) -> dict[int, dict[str, Any]]:
        raw = self.redis.hgetall(keys.job_items(job_id))
        return {int(_text(k)): json.loads(v) for k, v in raw.items()}

    def all_errors(self, job_id: str) -> list[ItemError]:
        raw = self.redis.lrange(keys.job_errors(job_id), 0, -1)
        return [ItemError.model_validate_json(e) for e in raw]

    def all_asset_ids(self, job_id: str) -> dict[int, str]:
        stored = self.redis.hgetall(keys.job_assets(job_id))
        return {int(_text(k)): _text(v) for k, v in stored.items()}

    def await_upstream(
        self,
        job_id: str,
        work_id: str,
        task: QueuedTask,
        total: int,
        result: Result,
        then: QueuedTask,
        batch: dict[Any, Any],
    ) -> bool:
        """Records that the job's work runs upstream (a Gemini batch): the job's size and first
        result, the work entry that collects the answers (marked started, not sent: the poller
        sends it when the batch ends), the step after it, and the batch's details; False when
        the job was cancelled meanwhile."""
        job_key, work_key = keys.job(job_id), keys.job_work(job_id)
        entry = WorkEntry.of(task).model_copy(
            update={
                "started_by": f"{UPSTREAM_RUNNER}{batch.get('name', '')}",
                "started_at": time.time(),
            }
        )
        fields: dict[Any, Any] = {
            "planned": 1,
            "total": total,
            "pending": 1,
            "result": result.model_dump_json(),
            "then": WorkEntry.of(then).dump(),
        }
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(job_key)
                    if _maybe_text(pipe.hget(job_key, "state")) != JobState.running:
                        pipe.unwatch()
                        self._script(self._drop_work, job_id, START)
                        self._settled(job_id)
                        return False
                    pipe.multi()
                    pipe.hset(job_key, mapping=fields)
                    pipe.hset(keys.job_batch(job_id), mapping=batch)
                    pipe.hdel(work_key, START)
                    pipe.hset(work_key, work_id, entry.dump())
                    pipe.sadd(keys.GEMINI_BATCHES, job_id)
                    pipe.zadd(keys.ACTIVE_JOBS, {job_id: time.time()})
                    pipe.publish(keys.events(job_id), "progress")
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def wait_upstream_again(self, job_id: str, work_id: str, name: str) -> None:
        """Gives started upstream work back to the batch poller (its answers could not be
        read this time); the work's attempts so far are kept."""
        raw = self.redis.hget(keys.job_work(job_id), work_id)
        if raw is None:
            return
        entry = WorkEntry.model_validate_json(raw).model_copy(
            update={"started_by": f"{UPSTREAM_RUNNER}{name}", "started_at": time.time()}
        )
        pipe = self.redis.pipeline()
        pipe.hset(keys.job_work(job_id), work_id, entry.dump())
        pipe.sadd(keys.GEMINI_BATCHES, job_id)
        pipe.execute()

    def batch_info(self, job_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(keys.job_batch(job_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_batch_info(self, job_id: str, **fields: str) -> None:
        mapping: dict[Any, Any] = fields
        self.redis.hset(keys.job_batch(job_id), mapping=mapping)

    def waiting_batches(self) -> list[str]:
        return sorted(_text(m) for m in self.redis.smembers(keys.GEMINI_BATCHES))  # type: ignore[union-attr]

    def forget_batch(self, job_id: str) -> None:
        self.redis.srem(keys.GEMINI_BATCHES, job_id)

    # ── webhooks ───────────────────────────────────────────────────────────────────────────

    def webhook_target(self, job_id: str) -> str | None:
        raw = self.redis.hget(keys.job(job_id), "webhook")
        return _text(raw) if raw else None

    def due_webhooks(self, now: float, limit: int = 20) -> list[str]:
        found: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.WEBHOOKS_DUE, "-inf", now, start=0, num=limit
        )
        return [_text(job_id) for job_id in found]

    def claim_webhook(self, job_id: str) -> bool:
        """One deliverer per attempt across the fleet: whoever removes it sends it."""
        return bool(self.redis.zrem(keys.WEBHOOKS_DUE, job_id))

    def webhook_attempt(self, job_id: str) -> int:
        return int(self.redis.hincrby(keys.job(job_id), "webhook_attempts", 1))

    def retry_webhook(self, job_id: str, at: float) -> None:
        self.redis.zadd(keys.WEBHOOKS_DUE, {job_id: at})

    def set_result(self, job_id: str, result: BaseModel) -> None:
        self.redis.hset(keys.job(job_id), "result", result.model_dump_json())

    # ── the watchdog's view ────────────────────────────────────────────────────────────────

    def quiet_jobs(self, since: float, limit: int = 100) -> list[str]:
        """Active jobs with no sign of life since `since` (oldest first)."""
        found: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.ACTIVE_JOBS, "-inf", since, start=0, num=limit
        )
        return [_text(job_id) for job_id in found]

    def work(self, job_id: str) -> dict[str, WorkEntry]:
        raw = self.redis.hgetall(keys.job_work(job_id))
        return {_text(k): WorkEntry.model_validate_json(v) for k, v in raw.items()}

    def resend_work(self, job_id: str, work_id: str, task: QueuedTask) -> int:
        """Sends the work's task again; returns its attempts so far (-1: the work is gone)."""
        args = (work_id, task.queue, task.payload, task.task_id)
        return int(self._script(self._resend_work, job_id, *args))

    def find_tasks(self, task_ids: list[str], queues: Iterable[str]) -> set[str]:
        """Which of these task messages still exist: waiting in a queue or held by a worker."""
        if not task_ids:
            return set()
        found = self._find_tasks(keys=[*queues, keys.UNACKED], args=task_ids)
        return {_text(task_id) for task_id in found}

    def touch(self, job_id: str) -> None:
        """A sign of life: the watchdog leaves the job alone for a while."""
        self.redis.zadd(keys.ACTIVE_JOBS, {job_id: time.time()}, xx=True)

    def forget(self, job_id: str) -> None:
        """Drops an active-index entry whose record is gone (it expired or was never there)."""
        self.redis.zrem(keys.ACTIVE_JOBS, job_id)

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
        ended = self._script(
            self._finish_script, job_id, *args, extra_keys=[keys.job_errors(job_id)]
        )
        if ended:
            self._expire(job_id)
        return bool(ended)

    def _script(self, script: Any, job_id: str, *args: Any, extra_keys: Iterable[str] = ()) -> Any:
        """Runs a job script: KEYS job, work, active index, events (+ extra); ARGV job id, now."""
        names = [keys.job(job_id), keys.job_work(job_id), keys.ACTIVE_JOBS, keys.events(job_id)]
        return script(keys=[*names, *extra_keys], args=[job_id, time.time(), *args])

    def _asset_ids(self, job_id: str, total: int) -> list[str | None] | None:
        if total > ASSET_IDS_SHOWN:
            return None
        stored = self.redis.hgetall(keys.job_assets(job_id))
        by_index = {int(_text(k)): _text(v) for k, v in stored.items()}
        return [by_index.get(i) for i in range(total)]

    def _expire(self, job_id: str) -> None:
        """Called once per job, by the call that ended it: the record starts its TTL, the
        process that ended it (a worker; the API for a cancel) counts it for /metrics, and
        its webhook (if any) becomes due."""
        pipe = self.redis.pipeline()
        for key in keys.job_parts(job_id):
            pipe.expire(key, self.ttl_s)
        pipe.hmget(keys.job(job_id), "kind", "state", "webhook")
        *_, (kind, state, webhook) = pipe.execute()
        JOBS_FINISHED.labels(_maybe_text(kind) or "?", _maybe_text(state) or "?").inc()
        # once per job, however many paths see it end
        if webhook and self.redis.hsetnx(keys.job(job_id), "webhook_queued", 1):
            self.redis.zadd(keys.WEBHOOKS_DUE, {job_id: time.time()}, nx=True)

    def _settled(self, job_id: str) -> None:
        """After dropping work: if that ended the job (a cancelling job's last work), what
        follows an end."""
        if self.state(job_id) == JobState.cancelled:  # the only end dropping work can bring
            self._expire(job_id)


def _by_queue(batches: list[tuple[str, QueuedTask]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for _, task in batches:
        grouped.setdefault(task.queue, []).append(task.payload)
    return grouped


def _request_of(raw: bytes | str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def _tenant_of(raw: bytes | str | None) -> str | None:
    return (_text(raw) or None) if raw else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _maybe_text(value: bytes | str | None) -> str | None:
    return None if value is None else _text(value)


def _summary(fields: dict[str, Any]) -> JobSummary:
    def number(name: str) -> float | None:
        return float(fields[name]) if fields.get(name) else None

    return JobSummary(
        id=fields["id"],
        kind=JobKind(fields["kind"]),
        state=JobState(fields["state"]),
        progress=Progress(
            total=int(fields.get("total") or 0),
            succeeded=int(fields.get("succeeded") or 0),
            failed=int(fields.get("failed") or 0),
        ),
        created_at=float(fields["created_at"]),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        error=ErrorInfo.model_validate_json(fields["error"]) if fields.get("error") else None,
    )
