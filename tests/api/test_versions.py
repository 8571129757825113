"""Re-index submits and collection versions over HTTP, in-process: what is refused, and why."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient

from shared.jobs.store import JobStore
from shared.milvus.gateway import VectorStore
from shared.milvus.reindexing import ReindexMark, ReindexMarks
from shared.settings import Settings
from tests.support.responses import error_code


def make_collection(settings: Settings, name: str = "c") -> VectorStore:
    store = VectorStore(settings.resolved_milvus_uri)
    store.ensure_collection(name, 48, settings.clip_model)
    return store


def test_reindex_refusals(api: TestClient, settings: Settings, other_clip: Path) -> None:
    make_collection(settings)
    missing = api.post("/v1/collections/nope/reindex", json={"model": str(other_clip)})
    assert missing.status_code == 404 and error_code(missing) == "collection_not_found"
    refused = api.post("/v1/collections/c/reindex", json={"model": "ViT-Nope/99"})
    assert refused.status_code == 422 and error_code(refused) == "model_not_allowed"
    assert "ViT-Nope/99" in refused.json()["error"]["message"]
    bad = api.post("/v1/collections/c/reindex", json={"model": "bad model!"})
    assert bad.status_code == 422 and error_code(bad) == "invalid_request"
    assert str(other_clip) in api.get("/v1/meta").json()["models"]

    first = api.post("/v1/collections/c/reindex", json={"model": str(other_clip)})
    assert first.status_code == 202, first.text
    assert first.json()["kind"] == "reindex"
    # while a worker builds version 2 (its mark set), a second re-index and a drop of the
    # version being built are refused
    client = redis.Redis.from_url(settings.redis_url)
    mark = ReindexMark(job_id=first.json()["id"], model=str(other_clip), version=2, from_version=1)
    ReindexMarks(client, JobStore(client, 3600)).begin("c", mark)
    again = api.post("/v1/collections/c/reindex", json={"model": str(other_clip)})
    assert again.status_code == 409 and error_code(again) == "reindex_running"
    building = api.delete("/v1/collections/c/versions/2")
    assert building.status_code == 409 and error_code(building) == "reindex_running"


def test_versions_listing_and_drops(api: TestClient, settings: Settings) -> None:
    store = make_collection(settings)
    store.create_version("c", settings.clip_model, 48)
    listed = api.get("/v1/collections/c/versions").json()["data"]
    assert [(v["version"], v["current"], v["count"]) for v in listed] == [
        (1, True, 0),
        (2, False, 0),
    ]
    in_use = api.delete("/v1/collections/c/versions/1")
    assert in_use.status_code == 409 and error_code(in_use) == "version_in_use"
    unknown = api.delete("/v1/collections/c/versions/9")
    assert unknown.status_code == 404 and error_code(unknown) == "version_not_found"
    assert api.delete("/v1/collections/c/versions/0").status_code == 422
    assert api.get("/v1/collections/nope/versions").status_code == 404
    nope = api.delete("/v1/collections/nope/versions/2")
    assert nope.status_code == 404 and error_code(nope) == "collection_not_found"
    assert api.delete("/v1/collections/c/versions/2").status_code == 204
    assert [v["version"] for v in api.get("/v1/collections/c/versions").json()["data"]] == [1]
