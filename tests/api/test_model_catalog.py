"""GET /v1/meta's model catalog and POST /v1/collections with a model of either family."""

from __future__ import annotations

from fastapi.testclient import TestClient

SIGLIP2 = "open_clip:ViT-B-16-SigLIP2/webli"
XLMR = "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"


def test_meta_lists_the_offered_models(api: TestClient) -> None:
    meta = api.get("/v1/meta").json()
    listed = {m["name"]: m for m in meta["model_catalog"]}
    assert [m["name"] for m in meta["model_catalog"]] == meta["models"]
    assert listed[SIGLIP2]["dimension"] == 768 and listed[SIGLIP2]["languages"] == "en"
    assert listed[XLMR]["dimension"] == 512 and "zh" in listed[XLMR]["languages"]
    assert listed["ViT-B/32"]["note"].startswith("OpenAI CLIP")
    assert [m["name"] for m in meta["model_catalog"] if m["default"]] == [meta["clip_model"]]


def test_a_collection_is_created_on_the_model_asked_for(api: TestClient) -> None:
    made = api.post("/v1/collections", json={"name": "sig", "model": SIGLIP2})
    assert made.status_code == 201, made.text
    assert (made.json()["model"], made.json()["dimension"]) == (SIGLIP2, 768)
    shown = api.get("/v1/collections/sig").json()
    assert (shown["model"], shown["dimension"]) == (SIGLIP2, 768)
    multi = api.post("/v1/collections", json={"name": "multi", "model": XLMR})
    assert multi.status_code == 201 and multi.json()["dimension"] == 512


def test_a_model_not_offered_is_refused(api: TestClient) -> None:
    refused = api.post("/v1/collections", json={"name": "x", "model": "open_clip:Nope/none"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "model_not_allowed"
