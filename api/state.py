"""The API process's dependencies, opened once in the lifespan and closed with it."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio

from api.events import JobEvents
from shared.heartbeats import WorkerHeartbeat
from shared.ratelimit import RateLimiter
from shared.redis_client import connect_async
from shared.services import Services
from shared.settings import Settings


@dataclass
class AppState(Services):
    aredis: redis.asyncio.Redis
    heartbeat: WorkerHeartbeat
    events: JobEvents
    limiter: RateLimiter

    @classmethod
    def open(cls, settings: Settings) -> AppState:
        """Opened inside the lifespan: the asyncio client binds to the server's event loop."""
        parts = Services.connect(settings)
        aredis = connect_async(settings.redis_url)
        return cls(
            **parts,
            aredis=aredis,
            heartbeat=WorkerHeartbeat(parts["redis"]),
            events=JobEvents(settings.redis_url),
            limiter=RateLimiter(aredis, settings.rate_limit_per_s, settings.rate_limit_burst),
        )

    async def aclose(self) -> None:
        await self.aredis.aclose()
        self.close()
