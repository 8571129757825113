"""/readyz asks for a live worker on each of ASSETRAG_READY_QUEUES: a cluster that scales
embed workers to zero keeps its API ready (and so able to take the work that scales them up)."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared.heartbeats import WorkerHeartbeat
from shared.settings import Settings
from shared.tasks import QUEUES


def test_every_queue_is_needed_by_default() -> None:
    assert Settings(_env_file=None).ready_queues == list(QUEUES)  # type: ignore[call-arg]


def test_ready_queues_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRAG_READY_QUEUES", "query, generate,default")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ready_queues == ["query", "generate", "default"]


def test_ready_without_embed_workers_when_embed_may_scale_to_zero(
    settings: Settings, redis_client: redis.Redis
) -> None:
    WorkerHeartbeat(redis_client).beat("light-1@pod", ["query", "generate", "default"])
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").status_code == 503  # embed has no worker
    scaled = settings.model_copy(update={"ready_queues": ["query", "generate", "default"]})
    with TestClient(create_app(scaled)) as api:
        ready = api.get("/readyz")
        assert ready.status_code == 200, ready.json()
        assert ready.json()["queues"]["embed"] == []  # still listed, just not needed


def test_a_misspelt_ready_queue_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRAG_READY_QUEUES", "query,embeds")
    with pytest.raises(ValueError, match="embeds"):
        Settings(_env_file=None)  # type: ignore[call-arg]
