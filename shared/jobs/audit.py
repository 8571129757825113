"""The watchdog's audit of outstanding work: which active jobs went quiet, what work they still
owe, whether its task messages still exist, and sending lost work again."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from shared import keys
from shared.jobs import scripts as job_scripts
from shared.jobs.records import WorkEntry, text
from shared.tasks import QueuedTask


class JobAudit:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._resend_work = client.register_script(job_scripts.RESEND_WORK)
        self._find_tasks = client.register_script(job_scripts.FIND_TASKS)

    def quiet_jobs(self, since: float, limit: int = 100) -> list[str]:
        """Active jobs with no sign of life since `since` (oldest first)."""
        found: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.ACTIVE_JOBS, "-inf", since, start=0, num=limit
        )
        return [text(job_id) for job_id in found]

    def work(self, job_id: str) -> dict[str, WorkEntry]:
        raw = self.redis.hgetall(keys.job_work(job_id))
        return {text(k): WorkEntry.model_validate_json(v) for k, v in raw.items()}

    def resend(self, job_id: str, work_id: str, task: QueuedTask) -> int:
        """Sends the work's task again; returns its attempts so far (-1: the work is gone)."""
        args = (work_id, task.queue, task.payload, task.task_id)
        return int(job_scripts.run(self._resend_work, job_id, *args))

    def find_tasks(self, task_ids: list[str], queues: Iterable[str]) -> set[str]:
        """Which of these task messages still exist: waiting in a queue or held by a worker."""
        if not task_ids:
            return set()
        found = self._find_tasks(keys=[*queues, keys.UNACKED], args=task_ids)
        return {text(task_id) for task_id in found}

    def touch(self, job_id: str) -> None:
        """A sign of life: the watchdog leaves the job alone for a while."""
        self.redis.zadd(keys.ACTIVE_JOBS, {job_id: time.time()}, xx=True)

    def forget(self, job_id: str) -> None:
        """Drops an active-index entry whose record is gone (it expired or was never there)."""
        self.redis.zrem(keys.ACTIVE_JOBS, job_id)
