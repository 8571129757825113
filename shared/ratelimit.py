"""Per-caller request rate limits, shared by every API process through Redis.

GCRA (the generic cell rate algorithm): one key per caller holding the theoretical arrival
time of its next request, checked and moved in one Lua step on Redis's own clock, so API
replicas on hosts with skewed clocks agree. A caller may burst up to `burst` requests, then
`rate` per second; a refused request learns how long to wait.
"""

from __future__ import annotations

import math

import redis.asyncio

from shared import keys

# KEYS[1] the caller's key. ARGV[1] ms between requests, ARGV[2] burst (requests).
# Returns 0 when the request may go, else the milliseconds to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
return 0
"""


class RateLimiter:
    def __init__(self, client: redis.asyncio.Redis, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self._script = client.register_script(_GCRA)

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    async def wait_s(self, caller: str) -> float:
        """0 when the caller may go on now, else the seconds until it may."""
        if not self.enabled:
            return 0.0
        waited = await self._script(
            keys=[keys.rate_limit(caller)], args=[1000.0 / self.per_second, self.burst]
        )
        return int(waited) / 1000


def retry_after(wait_s: float) -> str:
    """A Retry-After header value: whole seconds, at least one."""
    return str(max(1, math.ceil(wait_s)))
