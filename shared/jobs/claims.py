"""Paid calls, claimed and recorded: a generate item is claimed (with its attempt number)
before it calls Gemini, and what it came to is recorded before its task is acknowledged.

So a task delivered again after a crash calls Gemini only for the items whose answer the
crash lost (claimed, not recorded: their second attempt says `attempts: 2`); a recorded item
is taken from its record, never paid for twice.
"""

from __future__ import annotations

import redis

from shared import keys
from shared.jobs.records import text


class ItemClaims:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def claim(self, job_id: str, index: int) -> int:
        """Claims the item for one more attempt; returns its number (1 for the first)."""
        return int(self.redis.hincrby(keys.job_claims(job_id), str(index), 1))

    def record(self, job_id: str, index: int, outcome: str) -> None:
        """What the item came to (a JSON object; its `result` is the results file's line)."""
        self.redis.hset(keys.job_items(job_id), str(index), outcome)

    def recorded(self, job_id: str, indices: list[int]) -> dict[int, str]:
        """The recorded outcomes among these items."""
        if not indices:
            return {}
        raw = self.redis.hmget(keys.job_items(job_id), [str(i) for i in indices])
        return {i: text(r) for i, r in zip(indices, raw, strict=True) if r is not None}

    def all_recorded(self, job_id: str) -> dict[int, str]:
        raw = self.redis.hgetall(keys.job_items(job_id))
        return {int(text(k)): text(v) for k, v in raw.items()}
