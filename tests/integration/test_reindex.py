"""Re-indexing a collection to another model through the real processes, on Milvus Lite and a
Milvus server, with searches running all the while; then its versions from the CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.images import make_image
from tests.support.stack import RunningStack, assetrag, embed, upload

pytestmark = pytest.mark.integration


def search_for(stack: RunningStack, asset_id: str) -> dict:
    body = {"collection": "reidx", "queries": [{"asset_id": asset_id}], "top_k": 3}
    response = stack.client.post("/v1/jobs/search", json=body, params={"wait": 30})
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def test_searches_answer_throughout_a_reindex_to_another_model(
    stack: RunningStack, other_clip: Path
) -> None:
    blobs = [make_image(seed) for seed in range(500, 540)]
    job = embed(stack, "reidx", [{"upload_id": u} for u in upload(stack, blobs, "re")])
    assert job["state"] == "completed", job
    ids = job["result"]["asset_ids"]

    searched: list[dict] = []
    done = threading.Event()

    def keep_searching() -> None:
        n = 0
        while not done.is_set():
            searched.append(search_for(stack, ids[n % len(ids)]))
            n += 1

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        response = stack.client.post(
            "/v1/collections/reidx/reindex", json={"model": str(other_clip)}
        )
        assert response.status_code == 202, response.text
        job = stack.wait_job(response.json()["id"], timeout_s=300)
    finally:
        done.set()
        searcher.join(60)
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": 40, "succeeded": 40, "failed": 0}
    assert job["result"]["swapped"] and job["result"]["dimension"] == 64
    # every search during the re-index answered, from one version or the other
    assert searched and all(s["state"] == "completed" for s in searched), searched[-1]

    info = stack.client.get("/v1/collections/reidx").json()
    assert (info["dimension"], info["model"], info["count"], info["version"]) == (
        64,
        str(other_clip),
        40,
        2,
    )
    after = search_for(stack, ids[7])
    assert after["result"]["results"][0][0]["asset_id"] == ids[7]

    listed = assetrag(stack, "versions", "-c", "reidx")
    assert listed.returncode == 0, listed.stderr
    assert "64" in listed.stdout and "*" in listed.stdout
    dropped = assetrag(stack, "drop-version", "-c", "reidx", "1")
    assert dropped.returncode == 0, dropped.stderr
    in_use = assetrag(stack, "drop-version", "-c", "reidx", "2")
    assert in_use.returncode != 0 and "version_in_use" in in_use.stderr
    # the same model again, from the CLI: a rebuild that drops what it replaces
    rebuilt = assetrag(stack, "reindex", "-c", "reidx", "--drop-previous")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "version 3" in rebuilt.stdout
    versions = stack.client.get("/v1/collections/reidx/versions").json()["data"]
    assert [(v["version"], v["count"], v["current"]) for v in versions] == [(3, 40, True)]
