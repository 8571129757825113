"""Worker heartbeats in Redis: which queues have a live consumer right now, and which task
messages each live worker holds (the watchdog gives back what a dead one held)."""

from __future__ import annotations

import json
import time

import redis

from shared import keys

HEARTBEAT_PERIOD_S = 5.0
HEARTBEAT_TTL_S = 20
# A held list outlives its worker's heartbeat, so the watchdog can still read it.
HELD_TTL_S = 3600


class WorkerHeartbeat:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def beat(self, hostname: str, queues: list[str], held: set[str] | None = None) -> None:
        record = json.dumps({"hostname": hostname, "queues": queues, "at": time.time()})
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.worker(hostname), record, ex=HEARTBEAT_TTL_S)
        pipe.delete(keys.worker_held(hostname))
        if held:
            pipe.sadd(keys.worker_held(hostname), *held)
            pipe.expire(keys.worker_held(hostname), HELD_TTL_S)
        pipe.execute()

    def hold(self, hostname: str, tag: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(keys.worker_held(hostname), tag)
        pipe.expire(keys.worker_held(hostname), HELD_TTL_S)
        pipe.execute()

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def live_on(self, host: str) -> list[str]:
        """The live workers whose hostname says they run on `host` (Celery's `name@host`):
        what a pod's probe asks, since a heartbeat is first written once the model loaded
        and is withheld while the worker does not consume."""
        return sorted(
            name
            for names in self.live_queues().values()
            for name in names
            if name.rpartition("@")[2] == host
        )

    def live_queues(self) -> dict[str, list[str]]:
        """Queue name to the hostnames that consumed from it within the heartbeat TTL."""
        by_queue: dict[str, list[str]] = {}
        names = list(self.redis.scan_iter(match=keys.WORKER_PATTERN, count=100))
        for raw in self.redis.mget(names) if names else []:
            if raw is None:
                continue
            record = json.loads(raw)
            for queue in record["queues"]:
                by_queue.setdefault(queue, []).append(record["hostname"])
        return by_queue
