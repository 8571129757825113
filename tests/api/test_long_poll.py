"""A long-poll (`?wait=`) wakes on the job's events and reads the record again only when an
end was published, or when its recheck is due."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import redis

from api.events import JobEvents
from api.long_poll import wait_for
from shared import keys

JOB_ID = "long-poll-job"


class CountingJobs:
    """Stands in for the job store: counts reads; the job ends when `finished` is set."""

    def __init__(self) -> None:
        self.reads = 0
        self.finished = False

    def get(self, job_id: str) -> Any:
        self.reads += 1
        return SimpleNamespace(id=job_id, finished=self.finished)


async def _subscribed(events: JobEvents, client: redis.Redis) -> None:
    """Until this process's subscription hears a message (others may subscribe too)."""
    async with events.watch("probe") as heard:
        while not heard.is_set():
            client.publish(keys.events("probe"), "progress")
            await asyncio.sleep(0.02)


def test_only_an_end_makes_the_long_poll_read_again(redis_port: int) -> None:
    client = redis.Redis(port=redis_port)
    jobs = CountingJobs()

    async def scenario() -> tuple[Any, float]:
        events = JobEvents(f"redis://127.0.0.1:{redis_port}/0")
        await events.start()
        try:
            await asyncio.wait_for(_subscribed(events, client), 10)
            state = SimpleNamespace(
                settings=SimpleNamespace(max_wait_s=30), events=events, jobs=jobs
            )
            started = time.monotonic()
            waiting = asyncio.create_task(
                wait_for(state, SimpleNamespace(id=JOB_ID, finished=False), 20)  # type: ignore[arg-type]
            )
            await asyncio.sleep(0.1)
            assert jobs.reads == 1  # the read before waiting
            for published in ("running", "progress", "progress"):
                client.publish(keys.events(JOB_ID), published)
            await asyncio.sleep(0.2)
            assert jobs.reads == 1, "a change that cannot end the wait made it read again"
            jobs.finished = True
            client.publish(keys.events(JOB_ID), "completed")
            found = await asyncio.wait_for(waiting, 5)
            return found, time.monotonic() - started
        finally:
            await events.stop()

    found, seconds = asyncio.run(scenario())
    assert found.finished and jobs.reads == 2
    assert seconds < 0.9, "woken by the end, not by the one-second recheck"
