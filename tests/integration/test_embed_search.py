"""The retrieval core through the real processes: API, Celery workers, Redis, Milvus Lite server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.images import make_image, write_images
from tests.support.stack import RunningStack, embed, upload

pytestmark = pytest.mark.integration


def test_uploaded_images_each_find_themselves_first(stack: RunningStack) -> None:
    blobs = [make_image(seed) for seed in range(20)]
    ids = upload(stack, blobs)
    items = [
        {"upload_id": u, "metadata": {"group": "even" if i % 2 == 0 else "odd"}}
        for i, u in enumerate(ids)
    ]
    job = embed(stack, "selfsearch", items)
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": 20, "succeeded": 20, "failed": 0}
    asset_ids = job["result"]["asset_ids"]
    assert len(set(asset_ids)) == 20

    queries = [{"upload_id": u} for u in ids[:5]] + [{"asset_id": a} for a in asset_ids[5:10]]
    response = stack.client.post(
        "/v1/jobs/search",
        params={"wait": 20},
        json={"collection": "selfsearch", "queries": queries, "top_k": 5},
    )
    assert response.status_code == 200, response.text
    results = response.json()["result"]["results"]
    assert len(results) == 10
    for expected, hits in zip(asset_ids[:10], results, strict=True):
        assert hits[0]["asset_id"] == expected
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert len(hits) == 5

    content = stack.client.get(results[0][0]["content_url"])
    assert content.status_code == 200
    assert content.content == blobs[0]


def test_text_search_filter_and_min_score(stack: RunningStack) -> None:
    ids = upload(stack, [make_image(100 + i) for i in range(12)])
    items = [
        {"upload_id": u, "metadata": {"group": "a" if i < 4 else "b"}} for i, u in enumerate(ids)
    ]
    assert embed(stack, "textsearch", items)["state"] == "completed"
    long_text = " ".join(["red silk shawl with gold trim"] * 40)  # far past CLIP's 77 tokens
    body = {
        "collection": "textsearch",
        "queries": [{"text": "a red dress"}, {"text": long_text}],
        "top_k": 10,
        "filter": {"group": "a"},
    }
    job = stack.client.post("/v1/jobs/search", params={"wait": 20}, json=body).json()
    assert job["state"] == "completed", job
    for hits in job["result"]["results"]:
        assert len(hits) == 4
        assert all(h["metadata"]["group"] == "a" for h in hits)
    threshold = job["result"]["results"][0][1]["score"]
    body = {**body, "min_score": threshold, "filter": None}
    job = stack.client.post("/v1/jobs/search", params={"wait": 20}, json=body).json()
    assert all(h["score"] >= threshold for h in job["result"]["results"][0])


def test_directory_job_with_bad_files_and_duplicates(stack: RunningStack) -> None:
    folder = stack.library / "mixed"
    write_images(folder, 30)
    (folder / "copy.png").write_bytes((folder / "img_00000.png").read_bytes())
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"this is not an image")
    (folder / "truncated.png").write_bytes((folder / "img_00001.png").read_bytes()[:200])
    refused = [
        {"path": "/etc/passwd"},
        {"url": "http://127.0.0.1:9/x.png"},
        {"url": "http://169.254.169.254/latest/meta-data"},
        {"upload_id": "no-such-upload-0123456789"},
    ]
    job = embed(stack, "mixed", refused, directory={"path": str(folder), "pattern": "*.png"})
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": 38, "succeeded": 31, "failed": 7}
    by_index = {e["index"]: e["code"] for e in job["errors"]}
    assert by_index[0] == "path_outside_roots"
    assert by_index[1] == by_index[2] == "forbidden_address"
    assert by_index[3] == "upload_not_found"
    assert {"empty_file", "not_an_image", "corrupt_image"} <= set(by_index.values())
    collection = stack.client.get("/v1/collections/mixed").json()
    assert collection["count"] == 30  # the copy is stored once


def test_progress_events_and_an_honest_cancel(stack: RunningStack) -> None:
    folder = stack.library / "big"
    write_images(folder, 400, start=1000)
    response = stack.client.post(
        "/v1/jobs/embed", json={"collection": "cancelme", "directory": {"path": str(folder)}}
    )
    job_id = response.json()["id"]
    events = []
    with stack.client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["progress"]["succeeded"] >= 32:
                    break
    assert events and events[-1]["state"] == "running"
    cancelling = stack.client.post(f"/v1/jobs/{job_id}/cancel").json()
    # a batch that had started finishes (the job says `cancelling` meanwhile); none starts after
    assert cancelling["state"] in ("cancelling", "cancelled")
    final = stack.wait_job(job_id, timeout_s=60)
    assert final["state"] == "cancelled" and final["finished_at"] is not None
    stored = stack.client.get("/v1/collections/cancelme").json()["count"]
    assert stored == final["progress"]["succeeded"] < 400, "the final counts are what was stored"
    time.sleep(3)
    assert stack.client.get(f"/v1/jobs/{job_id}").json() == final, "a terminal job never changes"
    assert stack.client.get("/v1/collections/cancelme").json()["count"] == stored
    again = stack.client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409


def test_the_default_worker_sweeps_expired_blobs(stack: RunningStack) -> None:
    import redis as redis_lib

    from shared.blobs import BlobExpiry, LocalBlobStore

    store = LocalBlobStore(Path(stack.stack.env["ASSETRAG_DATA_DIR"]) / "blobs")
    expiry = BlobExpiry(redis_lib.Redis.from_url(stack.stack.env["ASSETRAG_REDIS_URL"]), store)
    store.put("generated/expired-job/0", b"old bytes")
    expiry.schedule("generated/expired-job/0", 0)
    deadline = time.monotonic() + 20
    while store.exists("generated/expired-job/0") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not store.exists("generated/expired-job/0")


def test_query_workers_run_torch_on_one_thread_embed_workers_on_all(stack: RunningStack) -> None:
    """ASSETRAG_QUERY_TORCH_THREADS (1) in the query worker, torch's default in the embed
    worker, as each says when its model is loaded."""
    assert stack.stack.log_dir is not None

    def said(worker: str) -> str:
        lines = (stack.stack.log_dir / f"{worker}.log").read_text().splitlines()
        return [line for line in lines if "torch threads" in line][-1]  # logs append

    assert "; 1 torch threads)" in said("worker-query")
    assert f"; {len(os.sched_getaffinity(0))} torch threads)" in said("worker-embed")
