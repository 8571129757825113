"""A Redis restart under a running API costs no request: pooled connections Redis closed are
replaced on their next use, and a command that meets a closed, refused or still-loading Redis
is retried with backoff (shared/redis_client.py), so a submit sent while Redis restarts is
held until it is back, and the submits after it are accepted like any other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shared.milvus.gateway import VectorStore
from shared.redis_client import HEALTH_CHECK_S, RETRY_ON
from shared.settings import Settings
from shared.tasks import celery_config
from tests.support.redis_server import RestartableRedis

SUBMITS = 10
BODY = {"collection": "c", "queries": [{"text": "a red shawl"}]}
# How long Redis stays down in the second test: what `assetrag up`'s supervisor takes to
# start it again (a 1 s backoff), with a margin.
DOWN_S = 1.2


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def api_on_own_redis(settings: Settings, own_redis: RestartableRedis) -> Iterator[TestClient]:
    from api.main import create_app

    settings = settings.model_copy(update={"redis_url": own_redis.url()})
    VectorStore(settings.resolved_milvus_uri).ensure_collection("c", 48, settings.clip_model)
    with TestClient(create_app(settings)) as api:
        # every pooled connection (sync and asyncio) used before the restart
        for _ in range(3):
            assert api.post("/v1/jobs/search", json=BODY).status_code == 202
        yield api


def test_ten_submits_after_a_redis_restart_are_all_accepted(
    api_on_own_redis: TestClient, own_redis: RestartableRedis
) -> None:
    api = api_on_own_redis
    before = api.post("/v1/jobs/search", json=BODY).json()["id"]
    own_redis.restart()  # SIGTERM: Redis fsyncs its append-only file before it exits
    answers = [api.post("/v1/jobs/search", json=BODY) for _ in range(SUBMITS)]
    assert [r.status_code for r in answers] == [202] * SUBMITS, [r.text for r in answers]
    # what was written before the restart came back from the append-only file
    assert api.get(f"/v1/jobs/{before}").json()["state"] == "queued"


def test_a_submit_sent_while_redis_restarts_waits_for_it(
    api_on_own_redis: TestClient, own_redis: RestartableRedis
) -> None:
    api = api_on_own_redis
    own_redis.stop()
    answered: list[httpx.Response] = []
    sent = threading.Thread(
        target=lambda: answered.append(api.post("/v1/jobs/search", json=BODY)), daemon=True
    )
    sent.start()
    time.sleep(DOWN_S)
    own_redis.start()
    sent.join(30)
    assert [r.status_code for r in answered] == [202], [r.text for r in answered]
    answers = [api.post("/v1/jobs/search", json=BODY) for _ in range(SUBMITS)]
    assert [r.status_code for r in answers] == [202] * SUBMITS, [r.text for r in answers]


def test_every_redis_client_retries_and_checks_its_connections(
    api_on_own_redis: TestClient,
) -> None:
    state: Any = api_on_own_redis.app.state.assetrag  # type: ignore[attr-defined]
    for client in (state.redis, state.aredis):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["health_check_interval"] == HEALTH_CHECK_S
        assert kwargs["retry"].get_retries() >= 5
        assert set(RETRY_ON) <= set(kwargs["retry_on_error"])
    transport = celery_config(state.settings)["broker_transport_options"]
    assert transport["health_check_interval"] == HEALTH_CHECK_S
