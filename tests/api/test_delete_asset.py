"""DELETE /v1/collections/{name}/assets/{asset_id}, in-process: the asset is gone from its
routes, from the collection's count and from search, in every version of the collection;
unknown collections and assets, and another tenant's, answer 404."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient

from shared.milvus.gateway import VectorStore
from tests.support.images import make_image
from tests.support.responses import error_code
from tests.support.stack import InProcess


def ingest(client: TestClient, collection: str, seeds: range, **headers: str) -> list[str]:
    files = [
        ("files", (f"p{seed}.png", io.BytesIO(make_image(seed)), "image/png")) for seed in seeds
    ]
    uploads = client.post("/v1/uploads", files=files, headers=headers).json()["uploads"]
    job = client.post(
        "/v1/jobs/embed",
        params={"wait": 30},
        json={"collection": collection, "items": [{"upload_id": u["upload_id"]} for u in uploads]},
        headers=headers,
    ).json()
    assert job["state"] == "completed", job
    return list(job["result"]["asset_ids"])


def found(client: TestClient, collection: str, query: dict[str, Any]) -> set[str]:
    body = {"collection": collection, "queries": [query], "top_k": 10}
    job = client.post("/v1/jobs/search", params={"wait": 30}, json=body).json()
    assert job["state"] == "completed", job
    return {hit["asset_id"] for hit in job["result"]["results"][0]}


def test_a_deleted_asset_is_gone_from_its_routes_the_count_and_search(inproc: InProcess) -> None:
    api = inproc.api
    gone, *kept = ingest(api, "c", range(700, 703))
    asset = f"/v1/collections/c/assets/{gone}"
    assert api.get(asset).status_code == 200
    deleted = api.delete(asset)
    assert deleted.status_code == 204 and deleted.content == b""
    for path in (asset, f"{asset}/content", f"{asset}/thumbnail"):
        answer = api.get(path)
        assert answer.status_code == 404 and error_code(answer) == "asset_not_found", path
    assert api.get("/v1/collections/c").json()["count"] == 2
    assert found(api, "c", {"text": "anything"}) == set(kept)
    assert found(api, "c", {"asset_id": kept[0]}) == set(kept)
    listed = api.get("/v1/collections/c/assets").json()["data"]
    assert sorted(a["asset_id"] for a in listed) == sorted(kept)

    again = api.delete(asset)
    assert again.status_code == 404 and error_code(again) == "asset_not_found"
    unknown = api.delete(f"/v1/collections/nope/assets/{kept[0]}")
    assert unknown.status_code == 404 and error_code(unknown) == "collection_not_found"
    malformed = api.delete("/v1/collections/c/assets/not-an-asset-id")
    assert malformed.status_code == 404 and error_code(malformed) == "asset_not_found"
    operation = api.get("/openapi.json").json()["paths"]["/v1/collections/{name}/assets/{asset_id}"]
    assert {"204", "404"} <= set(operation["delete"]["responses"])


def test_a_delete_reaches_every_version_so_a_reindex_cannot_bring_it_back(
    inproc: InProcess,
) -> None:
    api = inproc.api
    gone, kept = ingest(api, "c", range(710, 712))
    store = VectorStore(inproc.settings.resolved_milvus_uri)
    # a version being built beside the one that answers, holding the same assets
    store.create_version("c", inproc.settings.clip_model, 48)
    store.upsert("c", store.get_assets("c", [gone, kept], with_vector=True), version=2)
    assert api.delete(f"/v1/collections/c/assets/{gone}").status_code == 204
    for version in (1, 2):
        assert [r.asset_id for r in store.get_assets("c", [gone, kept], version)] == [kept]
    store.swap("c", 2)
    assert api.get(f"/v1/collections/c/assets/{gone}").status_code == 404


def test_only_the_tenant_holding_an_asset_can_delete_it(inproc: InProcess) -> None:
    from api.main import create_app

    keyed = inproc.settings.model_copy(update={"api_keys": ["k-a:alpha", "k-b:beta"]})
    alpha = {"Authorization": "Bearer k-a"}
    beta = {"Authorization": "Bearer k-b"}
    with TestClient(create_app(keyed)) as client:
        [asset_id] = ingest(client, "mine", range(720, 721), **alpha)
        asset = f"/v1/collections/mine/assets/{asset_id}"
        assert client.delete(asset).status_code == 401
        theirs = client.delete(asset, headers=beta)
        assert theirs.status_code == 404 and error_code(theirs) == "collection_not_found"
        # beta's own collection of the same name does not hold alpha's asset
        ingest(client, "mine", range(721, 722), **beta)
        theirs = client.delete(asset, headers=beta)
        assert theirs.status_code == 404 and error_code(theirs) == "asset_not_found"
        assert client.get(asset, headers=alpha).status_code == 200
        assert client.delete(asset, headers=alpha).status_code == 204
        assert client.get(asset, headers=alpha).status_code == 404
        assert client.get("/v1/collections/mine", headers=beta).json()["count"] == 1
