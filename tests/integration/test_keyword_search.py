"""Keyword and hybrid search through the real processes: a SKU that CLIP cannot read is found
by its words. On the Milvus 2.3.5 server (no BM25) the same request is refused, clearly."""

from __future__ import annotations

import pytest

from tests.support.images import make_image
from tests.support.stack import RunningStack, embed, upload

pytestmark = pytest.mark.integration


def search(stack: RunningStack, collection: str, queries: list[dict], **extra: object) -> dict:
    body = {"collection": collection, "queries": queries, "top_k": 5, **extra}
    return stack.client.post("/v1/jobs/search", params={"wait": 20}, json=body).json()


def test_a_sku_is_the_first_keyword_and_hybrid_hit(stack: RunningStack) -> None:
    ids = upload(stack, [make_image(200 + i) for i in range(16)], name="catalogue")
    items = [{"upload_id": u, "metadata": {"sku": f"AB-{i}"}} for i, u in enumerate(ids)]
    items[9]["metadata"] = {"sku": "ZX-42", "caption": "walnut side table", "tags": ["oak"]}
    job = embed(stack, "catalogue", items)
    assert job["state"] == "completed", job
    sku_asset = job["result"]["asset_ids"][9]
    info = stack.client.get("/v1/collections/catalogue").json()

    if stack.backend == "milvus":
        assert info["keyword_search"] is False
        refused = stack.client.post(
            "/v1/jobs/search",
            json={"collection": "catalogue", "queries": [{"text": "ZX-42", "mode": "keyword"}]},
        )
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "keyword_search_unavailable"
        assert "Milvus 2.5" in error["message"]
        # vector search on the same collection answers as ever
        job = search(stack, "catalogue", [{"text": "ZX-42"}])
        assert job["state"] == "completed" and len(job["result"]["results"][0]) == 5
        return

    assert info["keyword_search"] is True
    job = search(
        stack,
        "catalogue",
        [
            {"text": "ZX-42", "mode": "keyword"},
            {"text": "ZX-42", "mode": "hybrid"},
            {"text": "ZX-42"},
            {"text": "walnut", "mode": "keyword"},
            {"text": "catalogue_3.png", "mode": "keyword"},
        ],
    )
    assert job["state"] == "completed", job
    keyword, hybrid, vector, caption, filename = job["result"]["results"]
    assert keyword[0]["asset_id"] == sku_asset
    assert keyword[0]["found_by"] == ["keyword"]
    assert hybrid[0]["asset_id"] == sku_asset
    assert "keyword" in hybrid[0]["found_by"]
    assert len(hybrid) == 5 and all(h["found_by"] for h in hybrid)
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
    assert all(h["found_by"] == ["vector"] for h in vector)
    assert [h["asset_id"] for h in caption] == [sku_asset]
    assert filename[0]["filename"] == "catalogue_3.png"
    assert job["progress"] == {"total": 5, "succeeded": 5, "failed": 0}


def test_mode_is_for_text_queries(stack: RunningStack) -> None:
    if stack.backend != "lite":
        pytest.skip("a request refusal: the same on either backend")
    refused = stack.client.post(
        "/v1/jobs/search",
        json={
            "collection": "catalogue",
            "queries": [{"asset_id": "0" * 64, "mode": "keyword"}],
        },
    )
    assert refused.status_code == 422
    assert "mode applies to text queries only" in refused.json()["error"]["message"]
