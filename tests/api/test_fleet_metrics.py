"""The API's /metrics reports the fleet's queue depths and active jobs, read from Redis at
scrape time (so every API replica gives the same figures)."""

from __future__ import annotations

import io
import json
import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import oldest_ages
from shared.tasks import SENT_AT
from tests.support.images import make_image


def gauges(api: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(api.get("/metrics").text)
    return {
        f"{s.name}{s.labels.get('queue', '')}": s.value
        for family in families
        if family.name
        in ("assetrag_queue_depth", "assetrag_queue_oldest_age_seconds", "assetrag_jobs_active")
        for s in family.samples
    }


def test_queue_depths_and_active_jobs(api: TestClient) -> None:
    before = gauges(api)
    assert before["assetrag_jobs_active"] == 0 and before["assetrag_queue_depthembed"] == 0
    files = [("files", ("a.png", io.BytesIO(make_image(3)), "image/png"))]
    [uploaded] = api.post("/v1/uploads", files=files).json()["uploads"]
    body = {"collection": "fleet", "items": [{"upload_id": uploaded["upload_id"]}]}
    assert api.post("/v1/jobs/embed", json=body).status_code == 202
    after = gauges(api)  # no worker runs here: the plan task waits on the default queue
    assert after["assetrag_jobs_active"] == 1
    assert after["assetrag_queue_depthdefault"] == 1


def test_the_oldest_waiting_task_has_an_age(api: TestClient) -> None:
    """Read from the queue's tail (the message workers take next) and its send time."""
    assert gauges(api)["assetrag_queue_oldest_age_secondsdefault"] == 0
    files = [("files", ("a.png", io.BytesIO(make_image(4)), "image/png"))]
    [uploaded] = api.post("/v1/uploads", files=files).json()["uploads"]
    body = {"collection": "aged", "items": [{"upload_id": uploaded["upload_id"]}]}
    assert api.post("/v1/jobs/embed", json=body).status_code == 202
    time.sleep(0.3)
    api.post("/v1/jobs/embed", json=body | {"collection": "aged2"})
    age = gauges(api)["assetrag_queue_oldest_age_secondsdefault"]
    assert 0.3 <= age < 30  # the first job's plan, not the second's
    assert gauges(api)["assetrag_queue_oldest_age_secondsembed"] == 0


def test_ages_of_tails() -> None:
    stamped = json.dumps({"headers": {SENT_AT: 100.0}})
    assert oldest_ages([None, stamped, b"{}", stamped], 130.0) == [0.0, 30.0, 0.0, 30.0]
    assert oldest_ages([stamped], 90.0) == [0.0]  # another host's clock ahead of ours
