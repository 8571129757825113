"""Job change notifications for long-polls and server-sent events.

One pattern subscription per API process fans Redis pub/sub messages out to the requests
waiting on a job. Waiters also re-read the job every second, so a missed message (a Redis
reconnect, say) costs at most a second, never a hung request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from shared import keys
from shared.redis_client import connect_async

log = logging.getLogger("assetrag.events")
RECHECK_S = 1.0
CANCEL_AGAIN_S = 0.1


class Changes(asyncio.Event):
    """Set on each change of one job; `states` holds what was published since the last wait
    (a state name, or "progress"), so a waiter that wants only the end need not re-read."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[str] = []


class JobEvents:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._waiters: dict[str, set[Changes]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="assetrag-job-events")

    async def stop(self) -> None:
        task = self._task
        if task is None:
            return
        # redis-py's asyncio pub/sub can swallow a cancellation that lands while it connects
        # or subscribes, and go on listening (redis/redis-py#2028 and its kin; seen with 8.1
        # as a lifespan that never ended): cancel again until the task is done.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[Changes]:
        event = Changes()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            self._waiters[job_id].discard(event)
            if not self._waiters[job_id]:
                del self._waiters[job_id]

    @staticmethod
    async def changed(event: Changes, timeout: float) -> list[str]:
        """Waits for the next change, or the recheck interval, whichever comes first; returns
        what was published meanwhile (none: the recheck is due)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(timeout, RECHECK_S))
        event.clear()
        states, event.states = event.states, []
        return states

    async def _listen(self) -> None:
        while True:
            client = connect_async(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(keys.EVENTS_PATTERN)
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        job_id = keys.job_id_of_events(message["channel"].decode())
                        published = message["data"].decode()
                        for event in self._waiters.get(job_id, ()):
                            event.states.append(published)
                            event.set()
            except (aioredis.RedisError, OSError):
                log.warning("job events subscription lost; reconnecting")
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()
