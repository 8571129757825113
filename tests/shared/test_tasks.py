"""Task messages: what TaskQueue pushes is what Celery itself would send."""

from __future__ import annotations

import json
import time

import redis

from shared.settings import Settings
from shared.tasks import RUN_SEARCH, SENT_AT, TaskQueue, decode, make_celery, sent_at


def test_our_messages_match_celerys_own(settings: Settings, redis_client: redis.Redis) -> None:
    celery = make_celery(settings)
    celery.send_task(RUN_SEARCH, args=["job-from-celery"], queue="query")
    theirs = json.loads(redis_client.rpop("query"))  # type: ignore[arg-type]
    TaskQueue(celery, redis_client).send(RUN_SEARCH, "job-from-us")
    ours = json.loads(redis_client.rpop("query"))  # type: ignore[arg-type]
    assert ours.keys() == theirs.keys()
    # Celery's headers, plus the one we add (its own messages carry no enqueue time)
    assert ours["headers"].keys() - {SENT_AT} == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    for field in ("content-type", "content-encoding"):
        assert ours[field] == theirs[field]
    for field in ("delivery_info", "delivery_mode", "priority", "body_encoding"):
        assert ours["properties"][field] == theirs["properties"][field]
    assert ours["headers"]["task"] == theirs["headers"]["task"] == RUN_SEARCH
    assert decode(json.dumps(ours)) == (RUN_SEARCH, ["job-from-us"])
    assert decode(json.dumps(theirs)) == (RUN_SEARCH, ["job-from-celery"])
    celery.close()


def test_messages_carry_when_they_were_made(settings: Settings, redis_client: redis.Redis) -> None:
    celery = make_celery(settings)
    before = time.time()
    TaskQueue(celery, redis_client).send(RUN_SEARCH, "job-1")
    payload = redis_client.rpop("query")
    assert payload is not None
    stamped = sent_at(payload)
    assert stamped is not None and before <= stamped <= time.time()
    celery.send_task(RUN_SEARCH, args=["job-2"], queue="query")
    assert sent_at(redis_client.rpop("query")) is None  # type: ignore[arg-type]
    assert sent_at(b"not json") is None
    celery.close()
