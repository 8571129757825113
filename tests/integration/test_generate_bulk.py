"""Bulk generation through the whole stack: API → Redis → Celery workers → the real
google-genai SDK → the fake Gemini (its Batch and Files APIs too), the default workers'
batch poller and webhook deliverer, and a local receiver checking the signatures.

One test that checks many things: the stack is shared and each job here takes seconds."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared import webhooks
from tests.support.fake_gemini import FakeGemini
from tests.support.http import receive_posts
from tests.support.stack import WEBHOOK_SECRET, RunningStack

pytestmark = [
    pytest.mark.integration,
    # the Milvus server adds nothing to what this module checks: Milvus Lite only
    pytest.mark.parametrize("stack", ["lite"], indirect=True),
]
COLLECTION = "bulkgen"


def submit(stack: RunningStack, body: dict[str, Any]) -> dict[str, Any]:
    response = stack.client.post("/v1/jobs/generate", json={"collection": COLLECTION, **body})
    assert response.status_code == 202, response.text
    return dict(response.json())


def results(stack: RunningStack, job_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(f"/v1/jobs/{job_id}/results")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_bulk_jobs_in_each_mode_cancel_and_signed_webhooks(
    stack: RunningStack, fake_gemini: FakeGemini
) -> None:
    made = stack.client.post("/v1/collections", json={"name": COLLECTION})
    assert made.status_code in (201, 409), made.text
    fifteen = {"asset_ids": [f"{i:064x}" for i in range(15)]}
    refused = stack.client.post(
        "/v1/jobs/generate",
        json={"collection": COLLECTION, "items": [{"prompt": "p", "references": fifteen}]},
    )
    assert refused.status_code == 422 and "14" in refused.text

    with receive_posts() as (url, received):
        hook = {"webhook": f"{url}/assetrag"}
        interactive = submit(
            stack,
            {"items": [{"prompt": stack.tag(f"live item {i}")} for i in range(20)], **hook},
        )
        batch_items = [{"prompt": stack.tag(f"night item {i}")} for i in range(20)]
        batch_items[7]["prompt"] += " [block:image]"
        batched = submit(
            stack, {"items": batch_items, "mode": "batch", "save_to_collection": True, **hook}
        )
        held = submit(
            stack,
            {"items": [{"prompt": stack.tag("held [batch:hold]")}], "mode": "batch", **hook},
        )
        name = wait_for_batch_name(stack, held["id"])
        cancelling = stack.client.post(f"/v1/jobs/{held['id']}/cancel").json()
        assert cancelling["state"] in ("cancelling", "cancelled")

        jobs = {j["id"]: stack.wait_job(j["id"], 120) for j in (interactive, batched, held)}
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)

    live = jobs[interactive["id"]]
    assert live["state"] == "completed", live
    assert live["progress"] == {"total": 20, "succeeded": 20, "failed": 0}
    assert [item["index"] for item in live["result"]["items"]] == list(range(20))
    assert len(results(stack, live["id"])) == 20

    night = jobs[batched["id"]]
    assert night["state"] == "completed", night
    assert night["progress"] == {"total": 20, "succeeded": 19, "failed": 1}
    assert [(e["index"], e["code"]) for e in night["errors"]] == [(7, "blocked")]
    assert night["result"]["mode"] == "batch"
    assert fake_gemini.batch_requests(night["result"]["batch"]) == 20
    lines = results(stack, night["id"])
    assert [line["index"] for line in lines] == list(range(20))
    assert lines[7]["status"] == "failed" and lines[7]["error"]["code"] == "blocked"
    first = lines[0]["result"]["images"][0]
    assert stack.client.get(first["content_url"]).content.startswith(b"\x89PNG")
    asset = stack.client.get(f"/v1/collections/{COLLECTION}/assets/{first['asset_id']}").json()
    assert asset["metadata"]["lineage"]["job_id"] == night["id"]

    assert jobs[held["id"]]["state"] == "cancelled"
    assert name in fake_gemini.batch_cancels

    # one signed webhook per finished job
    assert len(received) == 3, [r.headers for r in received]
    events = {}
    for post in received:
        assert webhooks.verify(WEBHOOK_SECRET, post.headers, post.body), post.headers
        event = json.loads(post.body)
        events[event["data"]["id"]] = event
        assert post.headers["webhook-id"] == f"msg_{event['data']['id']}"
    assert {job_id: e["data"]["state"] for job_id, e in events.items()} == {
        job_id: job["state"] for job_id, job in jobs.items()
    }
    assert events[held["id"]]["type"] == "job.cancelled"


def wait_for_batch_name(stack: RunningStack, job_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = stack.client.get(f"/v1/jobs/{job_id}").json()
        if (job.get("result") or {}).get("batch"):
            return str(job["result"]["batch"])
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} sent no batch")
