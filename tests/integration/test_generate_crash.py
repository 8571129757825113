"""Paid once, stored once: the generate worker SIGKILLed in the middle of a 24-item job (16 quick
items answered, 8 slow ones in flight). The job completes with 24 results; an item answered
before the kill is never sent again, none is sent more than twice, each image is saved once,
and `usage` counts every call made, the re-sent ones included."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.fake_gemini import FakeGemini
from tests.support.images import make_image
from tests.support.stack import RunningStack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
QUICK, SLOW = 16, 8


def test_sigkill_the_generate_worker_mid_job(stack: RunningStack, fake_gemini: FakeGemini) -> None:
    stack.ingest("chaos_gen", [("chaos_ref.png", make_image(8300))])
    tag = stack.tag("chaos")
    prompts = [f"{tag} quick {n}" for n in range(QUICK)]
    prompts += [f"{tag} slow {n} [slow:4]" for n in range(SLOW)]
    response = stack.client.post(
        "/v1/jobs/generate",
        json={
            "collection": "chaos_gen",
            "items": [{"prompt": p} for p in prompts],
            "save_to_collection": True,
        },
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def progress() -> dict[str, int]:
        return dict(stack.client.get(f"/v1/jobs/{job_id}").json()["progress"])

    wait_for(lambda: progress()["succeeded"] >= QUICK, 60, "the quick items")
    wait_for(lambda: len(fake_gemini.requests_for(f"{tag} slow")) == SLOW, 30, "the slow calls")
    victim = stack.stack.procs.pop("worker-generate")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    stack.stack.respawn("worker-generate")

    job = stack.wait_job(job_id, timeout_s=120)
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": 24, "succeeded": 24, "failed": 0}
    sent = Counter(r.prompt for r in fake_gemini.requests_for(tag))
    assert all(sent[p] == 1 for p in prompts[:QUICK]), "an answered item was sent again"
    assert all(1 <= sent[p] <= 2 for p in prompts[QUICK:]), sent
    items = {item["index"]: item for item in job["result"]["items"]}
    assert sorted(items) == list(range(24))
    assert all(items[n]["attempts"] == sent[prompts[n]] for n in range(24))
    usage = job["result"]["usage"]
    assert usage["calls"] == sum(sent.values()) == sum(i["attempts"] for i in items.values())
    assert usage["images_returned"] == 24
    assert usage["images_billed"] == usage["calls"]  # each lost call counted as billed

    # every image saved exactly once: distinct assets, all in the collection, and the job's
    # blobs are exactly its 24 images (a re-sent item wrote over its own key)
    saved = [image["asset_id"] for image in job["result"]["images"]]
    assert len(saved) == len(set(saved)) == 24
    assert stack.client.get("/v1/collections/chaos_gen").json()["count"] == 1 + 24
    blobs = Path(stack.stack.env["ASSETRAG_DATA_DIR"]) / "blobs"
    kept = sorted(int(p.name) for p in (blobs / "generated" / job_id).iterdir())
    numbers = sorted(
        int(image["content_url"].rstrip("/").rsplit("/", 1)[-1])
        for image in job["result"]["images"]
    )
    assert kept == numbers
    originals = {p.name for p in (blobs / "assets").rglob("*") if p.is_file()}
    assert set(saved) <= originals
