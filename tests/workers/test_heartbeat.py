"""A worker drops out of /readyz when it stops consuming, not only when it dies."""

from __future__ import annotations

from types import SimpleNamespace

import redis
from celery.bootsteps import CLOSE, RUN

from shared.heartbeats import WorkerHeartbeat
from workers.celery_app import consuming


def consumer(state: int = RUN, connected: bool = True, queues: list[str] | None = None) -> object:
    return SimpleNamespace(
        blueprint=SimpleNamespace(state=state),
        connection=SimpleNamespace(connected=connected),
        task_consumer=SimpleNamespace(queues=["embed"] if queues is None else queues),
    )


def test_consuming_needs_a_running_consumer_on_a_live_connection() -> None:
    assert consuming(consumer())
    assert not consuming(consumer(state=CLOSE))
    assert not consuming(consumer(connected=False))
    assert not consuming(consumer(queues=[]))


def test_heartbeats_list_live_queues(redis_client: redis.Redis) -> None:
    heartbeat = WorkerHeartbeat(redis_client)
    heartbeat.beat("embed-1@host", ["embed"])
    heartbeat.beat("multi@host", ["default", "query"])
    assert heartbeat.live_queues() == {
        "embed": ["embed-1@host"],
        "default": ["multi@host"],
        "query": ["multi@host"],
    }
    assert 0 < redis_client.ttl("assetrag:worker:embed-1@host") <= 20


def test_workers_live_on_a_host(redis_client: redis.Redis) -> None:
    heartbeat = WorkerHeartbeat(redis_client)
    heartbeat.beat("embed-7@pod-a", ["embed"])
    heartbeat.beat("query-8@pod-ab", ["query"])
    assert heartbeat.live_on("pod-a") == ["embed-7@pod-a"]
    assert heartbeat.live_on("pod") == []
    redis_client.delete("assetrag:worker:embed-7@pod-a")  # its TTL ran out
    assert heartbeat.live_on("pod-a") == []
