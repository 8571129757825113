"""What the web UI reads besides jobs: /v1/meta and paging through a collection's assets."""

from __future__ import annotations

import io
import re
from typing import Any, get_args

from fastapi.testclient import TestClient

from shared import contract
from shared.settings import Settings
from tests.support.images import make_image
from tests.support.responses import error_code
from tests.support.stack import InProcess


def ingest(client: TestClient, collection: str, count: int, **headers: str) -> list[str]:
    files = [
        ("files", (f"p{i}.png", io.BytesIO(make_image(900 + i)), "image/png")) for i in range(count)
    ]
    uploads = client.post("/v1/uploads", files=files, headers=headers).json()["uploads"]
    items = [{"upload_id": u["upload_id"]} for u in uploads]
    job = client.post(
        "/v1/jobs/embed",
        params={"wait": 30},
        json={"collection": collection, "items": items},
        headers=headers,
    ).json()
    assert job["state"] == "completed", job
    return list(job["result"]["asset_ids"])


def all_pages(client: TestClient, path: str, limit: int, **headers: str) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_assets_page_through_a_collection_in_id_order(inproc: InProcess) -> None:
    api = inproc.api
    ids = ingest(api, "paged", 7)
    pages = all_pages(api, "/v1/collections/paged/assets", 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [asset["asset_id"] for page in pages for asset in page]
    assert seen == sorted(ids)
    first = pages[0][0]
    assert first == api.get(f"/v1/collections/paged/assets/{first['asset_id']}").json()
    thumb = api.get(first["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    # a page size that divides the count exactly still ends with next_cursor null
    assert [len(p) for p in all_pages(api, "/v1/collections/paged/assets", 7)] == [7]
    default = api.get("/v1/collections/paged/assets").json()
    assert len(default["data"]) == 7 and default["next_cursor"] is None


def test_assets_paging_refuses_what_it_cannot_page(inproc: InProcess) -> None:
    api = inproc.api
    ingest(api, "paged", 1)
    for params, status, code in [
        ({"cursor": "not-an-asset-id"}, 422, "invalid_request"),
        ({"limit": 0}, 422, "invalid_request"),
        ({"limit": 201}, 422, "invalid_request"),
    ]:
        response = api.get("/v1/collections/paged/assets", params=params)
        assert response.status_code == status and response.json()["error"]["code"] == code
    missing = api.get("/v1/collections/nosuch/assets")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
    after_last = api.get("/v1/collections/paged/assets", params={"cursor": "f" * 64}).json()
    assert after_last == {"data": [], "next_cursor": None}
    statuses = api.get("/openapi.json").json()["paths"]["/v1/collections/{name}/assets"]["get"]
    assert {"200", "404", "422"} <= set(statuses["responses"])


def test_asset_routes_answer_404_for_what_the_path_names(inproc: InProcess) -> None:
    """The collection and the asset a path names are loaded (or refused) before a handler
    runs: the record, its original bytes and its thumbnail answer the same 404s."""
    from shared.blobs import asset_key

    api = inproc.api
    [asset_id] = ingest(api, "named", 1)
    for tail in ("", "/content", "/thumbnail"):
        nosuch = api.get(f"/v1/collections/nosuch/assets/{asset_id}{tail}")
        assert nosuch.status_code == 404 and error_code(nosuch) == "collection_not_found"
        for other in ("0" * 64, "not-an-asset-id"):
            missing = api.get(f"/v1/collections/named/assets/{other}{tail}")
            assert missing.status_code == 404 and error_code(missing) == "asset_not_found"
            assert other in missing.json()["error"]["message"]
    thumb = api.get(f"/v1/collections/named/assets/{asset_id}/thumbnail", params={"size": 128})
    assert thumb.status_code == 200
    held = {"If-None-Match": thumb.headers["ETag"]}
    again = api.get(f"/v1/collections/named/assets/{asset_id}/thumbnail?size=128", headers=held)
    assert again.status_code == 304 and again.headers["ETag"] == thumb.headers["ETag"]
    api.app.state.assetrag.blobs.delete(asset_key(asset_id))  # type: ignore[attr-defined]
    gone = api.get(f"/v1/collections/named/assets/{asset_id}/content")
    assert gone.status_code == 404 and error_code(gone) == "content_not_found"
    unmade = api.get(f"/v1/collections/named/assets/{asset_id}/thumbnail", params={"size": 512})
    assert unmade.status_code == 404 and error_code(unmade) == "content_not_found"


def test_tenants_page_only_their_own_assets(inproc: InProcess) -> None:
    from api.main import create_app

    keyed = inproc.settings.model_copy(update={"api_keys": ["k-a:alpha", "k-b:beta"]})
    with TestClient(create_app(keyed)) as client:
        alpha = {"Authorization": "Bearer k-a"}
        beta = {"Authorization": "Bearer k-b"}
        ids = ingest(client, "mine", 2, **alpha)
        [page] = all_pages(client, "/v1/collections/mine/assets", 10, **alpha)
        assert sorted(a["asset_id"] for a in page) == sorted(ids)
        assert client.get("/v1/collections/mine/assets", headers=beta).status_code == 404
        assert client.get("/v1/collections/mine/assets").status_code == 401


def test_meta_is_the_contract(api: TestClient, settings: Settings) -> None:
    meta = api.get("/v1/meta").json()
    assert meta["job_states"] == [s.value for s in contract.JobState]
    assert set(meta["terminal_states"]) == set(contract.TERMINAL_STATES)
    assert set(meta["cancellable_states"]) == set(contract.ACTIVE_STATES)
    assert meta["job_kinds"] == [k.value for k in contract.JobKind]
    assert meta["aspect_ratios"] == list(get_args(contract.AspectRatio))
    assert meta["image_sizes"] == list(get_args(contract.ImageSize))
    assert meta["thumbnail_sizes"] == list(contract.THUMBNAIL_SIZES)
    assert meta["top_k"] == {"min": 1, "max": contract.TOP_K_MAX, "default": 10}
    assert meta["generate_count"] == {"min": 1, "max": 4, "default": 1}
    assert meta["reference_top_k"]["max"] == contract.MAX_REFERENCES
    assert re.fullmatch(meta["collection_name_pattern"], "products_2")
    assert meta["max_upload_bytes"] == settings.max_upload_bytes
    assert meta["generator_configured"] is True


def test_meta_needs_the_key_like_every_v1_route(settings: Settings) -> None:
    from api.main import create_app

    keyed = settings.model_copy(update={"api_keys": ["k-a:alpha"], "gemini_api_key": None})
    with TestClient(create_app(keyed)) as client:
        assert client.get("/v1/meta").status_code == 401
        meta = client.get("/v1/meta", headers={"Authorization": "Bearer k-a"}).json()
        assert meta["generator_configured"] is False
