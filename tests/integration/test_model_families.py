"""Collections on both model families side by side, through the real processes: a re-index
from OpenAI CLIP to SigLIP 2 (open_clip), a collection created on SigLIP 2 and moved to the
multilingual model, images finding themselves and Chinese and English queries answering on
each. The open_clip models are reduced random-weight ones read from ASSETRAG_MODEL_DIR."""

from __future__ import annotations

import pytest

from tests.support.images import make_image
from tests.support.open_clip_models import SIGLIP, XLMR
from tests.support.stack import RunningStack, assetrag, embed, upload

pytestmark = pytest.mark.integration

QUERIES = ["red silk shawl with gold trim", "上一季 Lunar 系列的紅色披肩"]


def search(stack: RunningStack, collection: str, queries: list[dict]) -> list[list[dict]]:
    body = {"collection": collection, "queries": queries, "top_k": 3}
    response = stack.client.post("/v1/jobs/search", json=body, params={"wait": 30})
    assert response.status_code in (200, 202), response.text
    job = stack.wait_job(response.json()["id"])
    assert job["state"] == "completed", job
    return job["result"]["results"]


def reindex(stack: RunningStack, collection: str, model: str) -> dict:
    response = stack.client.post(f"/v1/collections/{collection}/reindex", json={"model": model})
    assert response.status_code == 202, response.text
    job = stack.wait_job(response.json()["id"], timeout_s=300)
    assert job["state"] == "completed", job
    return job


def finds_itself_and_reads_both_languages(stack: RunningStack, name: str, ids: list[str]) -> None:
    hits = search(stack, name, [{"asset_id": ids[3]}, *({"text": q} for q in QUERIES)])
    assert hits[0][0]["asset_id"] == ids[3]
    assert all(len(found) == 3 for found in hits[1:]), hits


def test_collections_on_both_families_and_reindexes_between_them(stack: RunningStack) -> None:
    name = "fam"
    blobs = [make_image(seed) for seed in range(900, 912)]
    job = embed(stack, name, [{"upload_id": u} for u in upload(stack, blobs, "fam")])
    assert job["state"] == "completed", job
    ids = first = job["result"]["asset_ids"]

    moved = reindex(stack, name, SIGLIP)
    assert moved["result"]["dimension"] == 64 and moved["progress"]["succeeded"] == 12
    info = stack.client.get(f"/v1/collections/{name}").json()
    assert (info["model"], info["dimension"], info["count"]) == (SIGLIP, 64, 12)
    finds_itself_and_reads_both_languages(stack, name, ids)

    meta = stack.client.get("/v1/meta").json()
    listed = {m["name"]: m for m in meta["model_catalog"]}
    assert listed[SIGLIP]["dimension"] == 64  # recorded by the worker that loaded it
    assert listed["open_clip:ViT-B-16-SigLIP2/webli"]["dimension"] == 768

    # a collection made on SigLIP 2 (its dimension now known), then moved to the
    # multilingual model; the first collection keeps answering on its own model
    name = "ml"
    created = stack.client.post("/v1/collections", json={"name": name, "model": SIGLIP})
    assert created.status_code == 201, created.text
    assert (created.json()["model"], created.json()["dimension"]) == (SIGLIP, 64)
    refused = stack.client.post("/v1/collections", json={"name": name + "x", "model": "RN9"})
    assert refused.status_code == 422 and "not offered" in refused.text

    blobs = [make_image(seed) for seed in range(920, 930)]
    job = embed(stack, name, [{"upload_id": u} for u in upload(stack, blobs, "ml")])
    assert job["state"] == "completed", job
    ids = job["result"]["asset_ids"]
    finds_itself_and_reads_both_languages(stack, name, ids)

    moved = reindex(stack, name, XLMR)
    assert moved["result"]["dimension"] == 48
    info = stack.client.get(f"/v1/collections/{name}").json()
    assert (info["model"], info["dimension"], info["count"]) == (XLMR, 48, 10)
    finds_itself_and_reads_both_languages(stack, name, ids)
    finds_itself_and_reads_both_languages(stack, "fam", first)

    # the CLI: the offered models, and a collection made on one
    listed_cli = assetrag(stack, "models")
    assert listed_cli.returncode == 0 and XLMR in listed_cli.stdout, listed_cli.stderr
    made = assetrag(stack, "create-collection", "cli_ml", "--model", XLMR)
    assert made.returncode == 0 and "48-d" in made.stdout, made.stdout + made.stderr
