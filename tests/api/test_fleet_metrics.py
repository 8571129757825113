"""The API's /metrics reports the fleet's queue depths and active jobs, read from Redis at
scrape time (so every API replica gives the same figures)."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.images import make_image


def gauges(api: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(api.get("/metrics").text)
    return {
        f"{s.name}{s.labels.get('queue', '')}": s.value
        for family in families
        if family.name in ("assetrag_queue_depth", "assetrag_jobs_active")
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
