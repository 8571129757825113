"""Worker heartbeats in Redis: which queues have a live consumer right now."""

from __future__ import annotations

import json
import time

import redis

from shared.jobs import KEY_PREFIX

HEARTBEAT_PERIOD_S = 5.0
HEARTBEAT_TTL_S = 20
_PATTERN = f"{KEY_PREFIX}:worker:*"


class WorkerHeartbeat:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def beat(self, hostname: str, queues: list[str]) -> None:
        record = json.dumps({"hostname": hostname, "queues": queues, "at": time.time()})
        self.redis.set(f"{KEY_PREFIX}:worker:{hostname}", record, ex=HEARTBEAT_TTL_S)

    def live_queues(self) -> dict[str, list[str]]:
        """Queue name to the hostnames that consumed from it within the heartbeat TTL."""
        by_queue: dict[str, list[str]] = {}
        keys = list(self.redis.scan_iter(match=_PATTERN, count=100))
        for raw in self.redis.mget(keys) if keys else []:
            if raw is None:
                continue
            record = json.loads(raw)
            for queue in record["queues"]:
                by_queue.setdefault(queue, []).append(record["hostname"])
        return by_queue
