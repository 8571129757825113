"""``RpmLimiter``: a requests-per-minute limit on Gemini calls, shared by every process on one
Redis.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from shared import keys

_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""


class RpmLimiter:
    """A requests-per-minute limit shared by every process on one Redis.

    A sliding-window log in a sorted set (``keys.gemini_rpm(name)``), checked and updated
    atomically by a Lua script on Redis's own clock, so hosts with skewed clocks agree. At most
    ``rpm`` acquisitions succeed in any ``window_s`` (60 s; smaller in tests). ``rpm <= 0``
    means unlimited. Pass a sync ``redis.Redis`` (called from a thread; works from any event
    loop) or a ``redis.asyncio.Redis`` (bound to the loop it was first used in).
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        rpm: int,
        *,
        window_s: float = 60.0,
        name: str = "default",
    ) -> None:
        self.client = client
        self.rpm = int(rpm)
        self.window_s = float(window_s)
        self.key = keys.gemini_rpm(name)
        self._async_script: AsyncScript | None = None
        self._sync_script: Script | None = None
        if isinstance(client, redis.asyncio.Redis):
            self._async_script = client.register_script(_SLIDING_WINDOW_LUA)
        else:
            self._sync_script = client.register_script(_SLIDING_WINDOW_LUA)

    async def _try(self) -> float:
        """Take a slot if one is free (0.0), else the seconds until the oldest one frees."""
        args: list[str | int] = [self.rpm, int(self.window_s * 1_000_000), uuid.uuid4().hex]
        if self._async_script is not None:
            wait_us = await self._async_script(keys=[self.key], args=args)
        else:
            assert self._sync_script is not None
            wait_us = await asyncio.to_thread(self._sync_script, [self.key], args)
        return int(wait_us) / 1_000_000

    async def acquire(self) -> None:
        if self.rpm <= 0:
            return
        while True:
            wait = await self._try()
            if wait <= 0:
                return
            # a little jitter so a crowd of waiters does not retry in lockstep
            await asyncio.sleep(wait + random.uniform(0, min(0.05, self.window_s / 100)))
