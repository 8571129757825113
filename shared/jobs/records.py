"""The job record's pieces as Redis keeps them: a work entry, a job about to be created, and
the decoding of a record's fields. Pure data: no client is held here."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared import keys
from shared.contract import ErrorInfo, Job, JobKind, JobState, JobSummary, Progress, new_token
from shared.errors import CodedError
from shared.tasks import QueuedTask

START = "start"  # the work id of a job's first task (an embed plan, a search, a generation)
THEN = "then"  # the work id of a job's last step, sent once every batch is counted (Lua too)
UPSTREAM_RUNNER = "gemini:"  # who `started` work that runs as a Gemini batch


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


class AnyTenant:
    pass


ANY_TENANT = AnyTenant()


def new_job_id() -> str:
    return new_token()


def body_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


@dataclass
class NewJob:
    """A job about to be created: its record and first task."""

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
    ) -> NewJob:
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
        """Queue the writes on a transaction pipeline."""
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
        earlier_id, earlier_digest = text(answer).split(" ", 1)
        if earlier_digest != self.digest:
            raise CodedError(
                "idempotency_key_reused", "this Idempotency-Key was used with another body"
            )
        return earlier_id


def request_of(raw: bytes | str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def tenant_of(raw: bytes | str | None) -> str | None:
    return (text(raw) or None) if raw else None


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def maybe_text(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def summary_of(fields: dict[str, Any]) -> JobSummary:
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
