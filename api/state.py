"""The API process's dependencies, opened once in the lifespan and closed with it."""

from __future__ import annotations

from dataclasses import dataclass

from api.events import JobEvents
from shared.health import WorkerHeartbeat
from shared.services import Services
from shared.settings import Settings


@dataclass
class AppState(Services):
    heartbeat: WorkerHeartbeat
    events: JobEvents

    @classmethod
    def open(cls, settings: Settings) -> AppState:
        parts = Services.connect(settings)
        return cls(
            **parts, heartbeat=WorkerHeartbeat(parts["redis"]), events=JobEvents(settings.redis_url)
        )
