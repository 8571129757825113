"""The webhook outbox: which finished jobs have a webhook due, claimed by one deliverer per
attempt across the fleet, and retried later when the receiver did not take it.

A job's webhook becomes due in the same Lua step that ends the job (shared/jobs/scripts.py),
so no crash between the two can lose it."""

from __future__ import annotations

import redis

from shared import keys
from shared.jobs.records import text


class WebhookOutbox:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def target(self, job_id: str) -> str | None:
        raw = self.redis.hget(keys.job(job_id), "webhook")
        return text(raw) if raw else None

    def due(self, now: float, limit: int = 20) -> list[str]:
        found: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.WEBHOOKS_DUE, "-inf", now, start=0, num=limit
        )
        return [text(job_id) for job_id in found]

    def claim(self, job_id: str) -> bool:
        """One deliverer per attempt across the fleet: whoever removes it sends it."""
        return bool(self.redis.zrem(keys.WEBHOOKS_DUE, job_id))

    def attempt(self, job_id: str) -> int:
        """Counts a delivery attempt; returns its number (from 1)."""
        return int(self.redis.hincrby(keys.job(job_id), "webhook_attempts", 1))

    def retry(self, job_id: str, at: float) -> None:
        self.redis.zadd(keys.WEBHOOKS_DUE, {job_id: at})
