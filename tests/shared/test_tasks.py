"""Task messages: what TaskQueue pushes is what Celery itself would send."""

from __future__ import annotations

import json

import redis

from shared.settings import Settings
from shared.tasks import RUN_SEARCH, TaskQueue, decode, make_celery


def test_our_messages_match_celerys_own(settings: Settings, redis_client: redis.Redis) -> None:
    celery = make_celery(settings)
    celery.send_task(RUN_SEARCH, args=["job-from-celery"], queue="query")
    theirs = json.loads(redis_client.rpop("query"))  # type: ignore[arg-type]
    TaskQueue(celery, redis_client).send(RUN_SEARCH, "job-from-us")
    ours = json.loads(redis_client.rpop("query"))  # type: ignore[arg-type]
    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    for field in ("content-type", "content-encoding"):
        assert ours[field] == theirs[field]
    for field in ("delivery_info", "delivery_mode", "priority", "body_encoding"):
        assert ours["properties"][field] == theirs["properties"][field]
    assert ours["headers"]["task"] == theirs["headers"]["task"] == RUN_SEARCH
    assert decode(json.dumps(ours)) == (RUN_SEARCH, ["job-from-us"])
    assert decode(json.dumps(theirs)) == (RUN_SEARCH, ["job-from-celery"])
    celery.close()
