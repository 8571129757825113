"""The Gemini batch ledger: which jobs run as a Gemini batch, the batch's name and state, and
the work that collects its answers. The job's batch is found again here after any crash, so
it is never created twice, and a batch the job no longer wants is cancelled and its input
file deleted even when the worker that sent it died.

The batch's fields beside the job (`info`): `creating` (when a worker set out to create it:
written before anything goes to Gemini), `input_file` (its uploaded input, written before the
batch is created from it), `name` and `input` (once created), then what `await_upstream`
records; `cancel_sent`, `collect_sent` and `input_deleted` mark those steps done. A job stays
in the poller's set (`waiting`) from `creating` until nothing is left to do for its batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from shared import keys
from shared.contract import Result
from shared.jobs.records import START, UPSTREAM_RUNNER, WorkEntry, text
from shared.tasks import QueuedTask

# JobStore.replace_start: the first task's work replaced in one transaction (see there).
ReplaceStart = Callable[..., bool]


class BatchLedger:
    def __init__(self, client: redis.Redis, replace_start: ReplaceStart) -> None:
        self.redis = client
        self.replace_start = replace_start

    def await_upstream(
        self,
        job_id: str,
        work_id: str,
        task: QueuedTask,
        total: int,
        result: Result,
        then: QueuedTask,
        batch: dict[Any, Any],
        start: str = START,
    ) -> bool:
        """Records that the job's work runs upstream (a Gemini batch): the job's size and first
        result, the work entry that collects the answers (marked started, not sent: the poller
        sends it when the batch ends), the step after it, and the batch's details; False when
        the job was cancelled meanwhile. A redelivered first task finds it recorded: True."""
        if self.redis.hget(keys.job(job_id), "planned"):
            return True
        entry = WorkEntry.of(task).model_copy(
            update={
                "started_by": f"{UPSTREAM_RUNNER}{batch.get('name', '')}",
                "started_at": time.time(),
            }
        )
        fields: dict[Any, Any] = {
            "total": total,
            "result": result.model_dump_json(),
            "then": WorkEntry.of(then).dump(),
        }

        def record_batch(pipe: Any) -> None:
            pipe.hset(keys.job_batch(job_id), mapping=batch)
            pipe.sadd(keys.GEMINI_BATCHES, job_id)

        return self.replace_start(job_id, fields, {work_id: entry}, [], record_batch, start=start)

    def intend(self, job_id: str) -> None:
        """Notes that a batch is about to be created for the job, before anything goes to
        Gemini: whatever a crash leaves upstream is then looked for by the batch's display
        name, by the redelivered task or, once the job has ended, by the poller."""
        pipe = self.redis.pipeline()
        pipe.hset(keys.job_batch(job_id), "creating", str(time.time()))
        pipe.sadd(keys.GEMINI_BATCHES, job_id)
        pipe.execute()

    def wait(self, job_id: str) -> None:
        """Leaves the job's batch to the poller (something is still to be done for it)."""
        self.redis.sadd(keys.GEMINI_BATCHES, job_id)

    def wait_again(self, job_id: str, work_id: str, name: str) -> None:
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
        pipe.hdel(keys.job_batch(job_id), "collect_sent")
        pipe.sadd(keys.GEMINI_BATCHES, job_id)
        pipe.execute()

    def info(self, job_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(keys.job_batch(job_id))
        return {text(k): text(v) for k, v in raw.items()}

    def set_info(self, job_id: str, **fields: str) -> None:
        mapping: dict[Any, Any] = fields
        self.redis.hset(keys.job_batch(job_id), mapping=mapping)

    def waiting(self) -> list[str]:
        members = self.redis.smembers(keys.GEMINI_BATCHES)
        return sorted(text(m) for m in members)  # type: ignore[union-attr]

    def forget(self, job_id: str) -> None:
        self.redis.srem(keys.GEMINI_BATCHES, job_id)
