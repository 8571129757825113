"""The job record and its Redis store: the one serialisation of a job, shared by API and workers.

A job is one Redis hash under ``assetrag:job:{id}``; per-item errors, finished batch ids and
stored asset ids sit beside it. Batch completion is a Lua script so a redelivered batch is
counted once and the job turns ``completed`` exactly when its last outstanding batch reports.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

KEY_PREFIX = "assetrag"
JOB_INDEX_KEY = f"{KEY_PREFIX}:jobs"
EVENTS_PATTERN = f"{KEY_PREFIX}:events:*"
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ERRORS_SHOWN = 1000
ASSET_IDS_SHOWN = 10_000


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


FINAL_STATES = frozenset({JobState.completed, JobState.failed, JobState.cancelled})


class JobKind(StrEnum):
    embed = "embed"
    search = "search"
    generate = "generate"


class Progress(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0


class ErrorInfo(BaseModel):
    code: str
    message: str


class ItemError(BaseModel):
    index: int
    source: str
    code: str
    message: str


class Job(BaseModel):
    id: str
    kind: JobKind
    state: JobState
    progress: Progress = Field(default_factory=Progress)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    errors: list[ItemError] = Field(default_factory=list)
    tenant: str | None = Field(default=None, exclude=True)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def job_key(job_id: str) -> str:
    return f"{KEY_PREFIX}:job:{job_id}"


def events_channel(job_id: str) -> str:
    return f"{KEY_PREFIX}:events:{job_id}"


def new_job_id() -> str:
    return secrets.token_urlsafe(18)


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID_RE.match(job_id))


# KEYS: job hash, batches set, errors list, assets hash, events channel
# ARGV: batch id, succeeded, failed, now, n_errors, errors..., then index/asset pairs
_COMPLETE_BATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return -1 end
redis.call('HINCRBY', KEYS[1], 'succeeded', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])
local n_errors = tonumber(ARGV[5])
for i = 6, 5 + n_errors do redis.call('RPUSH', KEYS[3], ARGV[i]) end
for i = 6 + n_errors, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
local finished = 0
if pending <= 0 then
  local state = redis.call('HGET', KEYS[1], 'state')
  if state == 'queued' or state == 'running' then
    redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', ARGV[4])
    finished = 1
  end
end
redis.call('PUBLISH', KEYS[5], 'progress')
return finished
"""

# KEYS: job hash, events channel. ARGV: new state, now, allowed-from states...
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
for i = 3, #ARGV do
  if state == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    if ARGV[1] == 'running' then
      redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
    else
      redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
    end
    redis.call('PUBLISH', KEYS[2], ARGV[1])
    return 1
  end
end
return 0
"""


class JobStore:
    """Reads and writes job records; every state change publishes an event for waiters."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._complete_batch = client.register_script(_COMPLETE_BATCH)
        self._transition = client.register_script(_TRANSITION)

    def create(
        self, kind: JobKind, request: dict[str, Any], tenant: str | None = None, total: int = 0
    ) -> Job:
        job = Job(
            id=new_job_id(),
            kind=kind,
            state=JobState.queued,
            created_at=time.time(),
            tenant=tenant,
            progress=Progress(total=total),
        )
        fields: dict[Any, Any] = {
            "id": job.id,
            "kind": kind.value,
            "state": job.state.value,
            "created_at": job.created_at,
            "tenant": tenant or "",
            "total": total,
            "succeeded": 0,
            "failed": 0,
            "pending": 0,
            "request": json.dumps(request),
        }
        pipe = self.redis.pipeline()
        pipe.hset(job_key(job.id), mapping=fields)
        pipe.zadd(JOB_INDEX_KEY, {job.id: job.created_at})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job | None:
        if not valid_job_id(job_id):
            return None
        key = job_key(job_id)
        pipe = self.redis.pipeline()
        pipe.hgetall(key)
        pipe.lrange(f"{key}:errors", 0, ERRORS_SHOWN - 1)
        raw, errors = pipe.execute()
        if not raw:
            return None
        job = _restore(raw, errors)
        if job.kind == JobKind.embed and job.finished and job.result is not None:
            job.result["asset_ids"] = self._asset_ids(job_id, job.progress.total)
        return job

    def request(self, job_id: str) -> dict[str, Any]:
        raw = self.redis.hget(job_key(job_id), "request")
        return json.loads(raw) if raw else {}

    def state(self, job_id: str) -> JobState | None:
        raw = self.redis.hget(job_key(job_id), "state")
        return JobState(_text(raw)) if raw else None

    def tenant(self, job_id: str) -> str | None:
        raw = self.redis.hget(job_key(job_id), "tenant")
        return _text(raw) or None if raw else None

    def list_jobs(
        self,
        kind: JobKind | None = None,
        state: JobState | None = None,
        limit: int = 50,
        cursor: float | None = None,
        tenant: str | None = None,
    ) -> tuple[list[Job], float | None]:
        """Newest first; the cursor is the created_at of the last job returned."""
        jobs: list[Job] = []
        upper = f"({cursor}" if cursor is not None else "+inf"
        while len(jobs) < limit:
            page: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
                JOB_INDEX_KEY, upper, "-inf", start=0, num=limit * 2, withscores=True
            )
            if not page:
                return jobs, None
            for member, score in page:
                job = self.get(_text(member))
                upper = f"({score}"
                if job is None:
                    self.redis.zrem(JOB_INDEX_KEY, member)  # expired record
                elif _matches(job, kind, state, tenant):
                    jobs.append(job)
                    if len(jobs) == limit:
                        return jobs, score
        return jobs, None

    def set_plan(self, job_id: str, total: int, batches: int) -> bool:
        """Records the job's size once; a redelivered planning task must not reset the count."""
        key = job_key(job_id)
        if not self.redis.hsetnx(key, "planned", 1):
            return False
        self.redis.hset(key, mapping={"total": total, "pending": batches})
        self._publish(job_id, "progress")
        return True

    def mark_running(self, job_id: str) -> bool:
        """True when the job is (now) running; False when it already finished."""
        self._move(job_id, JobState.running, (JobState.queued,))
        return self.state(job_id) == JobState.running

    def cancel(self, job_id: str) -> bool:
        return self._finish(job_id, JobState.cancelled)

    def fail(self, job_id: str, code: str, message: str) -> bool:
        self.redis.hset(
            job_key(job_id), "error", ErrorInfo(code=code, message=message).model_dump_json()
        )
        return self._finish(job_id, JobState.failed)

    def complete(
        self,
        job_id: str,
        result: dict[str, Any],
        progress: Progress | None = None,
        errors: Iterable[ItemError] = (),
    ) -> bool:
        key = job_key(job_id)
        fields: dict[Any, Any] = {"result": json.dumps(result)}
        if progress is not None:
            fields |= progress.model_dump()
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=fields)
        for error in errors:
            pipe.rpush(f"{key}:errors", error.model_dump_json())
        pipe.execute()
        return self._finish(job_id, JobState.completed)

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.redis.hset(job_key(job_id), "result", json.dumps(result))

    def complete_batch(
        self,
        job_id: str,
        batch_id: str,
        succeeded: int,
        errors: list[ItemError],
        asset_ids: dict[int, str],
    ) -> bool:
        """Counts a batch once; returns True when this batch finished the job."""
        key = job_key(job_id)
        args: list[Any] = [batch_id, succeeded, len(errors), time.time(), len(errors)]
        args += [e.model_dump_json() for e in errors]
        for index, asset_id in asset_ids.items():
            args += [index, asset_id]
        keys = [key, f"{key}:batches", f"{key}:errors", f"{key}:assets", events_channel(job_id)]
        finished = self._complete_batch(keys=keys, args=args) == 1
        if finished:
            self._expire(job_id)
        return finished

    def _asset_ids(self, job_id: str, total: int) -> list[str | None] | None:
        if total > ASSET_IDS_SHOWN:
            return None
        stored = self.redis.hgetall(f"{job_key(job_id)}:assets")
        by_index = {int(_text(k)): _text(v) for k, v in stored.items()}
        return [by_index.get(i) for i in range(total)]

    def _finish(self, job_id: str, state: JobState) -> bool:
        moved = self._move(job_id, state, (JobState.queued, JobState.running))
        if moved:
            self._expire(job_id)
        return moved

    def _move(self, job_id: str, to: JobState, allowed: tuple[JobState, ...]) -> bool:
        keys = [job_key(job_id), events_channel(job_id)]
        return self._transition(keys=keys, args=[to.value, time.time(), *allowed]) == 1

    def _expire(self, job_id: str) -> None:
        key = job_key(job_id)
        pipe = self.redis.pipeline()
        for suffix in ("", ":errors", ":batches", ":assets"):
            pipe.expire(f"{key}{suffix}", self.ttl_s)
        pipe.execute()

    def _publish(self, job_id: str, what: str) -> None:
        self.redis.publish(events_channel(job_id), what)


def _matches(job: Job, kind: JobKind | None, state: JobState | None, tenant: str | None) -> bool:
    return (
        (kind is None or job.kind == kind)
        and (state is None or job.state == state)
        and (job.tenant or None) == tenant
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _restore(raw: dict[Any, Any], errors: list[Any]) -> Job:
    fields = {_text(k): _text(v) for k, v in raw.items()}

    def optional_float(name: str) -> float | None:
        return float(fields[name]) if fields.get(name) else None

    return Job(
        id=fields["id"],
        kind=JobKind(fields["kind"]),
        state=JobState(fields["state"]),
        progress=Progress(
            total=int(fields.get("total", 0)),
            succeeded=int(fields.get("succeeded", 0)),
            failed=int(fields.get("failed", 0)),
        ),
        created_at=float(fields["created_at"]),
        started_at=optional_float("started_at"),
        finished_at=optional_float("finished_at"),
        result=json.loads(fields["result"]) if fields.get("result") else None,
        error=ErrorInfo.model_validate_json(fields["error"]) if fields.get("error") else None,
        errors=[ItemError.model_validate_json(e) for e in errors],
        tenant=fields.get("tenant") or None,
    )
