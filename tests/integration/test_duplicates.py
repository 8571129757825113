"""Near-duplicate clusters through the real processes, on Milvus Lite and a Milvus server.

The test model has random weights, so what counts as "near" was measured, not assumed: an
image, a half-size JPEG of it and a slight crop of it score >= 0.999 against each other,
while the distinct images below (seeds picked for it) stay under 0.9 against each other
and against the original. The stack runs duplicates batches of 4 assets, so the job is
planned into several batches and a last step."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.support.images import make_image
from tests.support.stack import RunningStack, embed, upload

pytestmark = pytest.mark.integration
DISTINCT_SEEDS = [100, 102, 103, 106, 115, 131, 156]
SIZE = (320, 240)


def variants(seed: int) -> list[bytes]:
    """The image, the same resized to half and re-encoded as JPEG, and the same cropped by
    a few pixels each side."""
    original = make_image(seed, size=SIZE)
    image = Image.open(io.BytesIO(original)).convert("RGB")
    small, cropped = io.BytesIO(), io.BytesIO()
    image.resize((SIZE[0] // 2, SIZE[1] // 2)).save(small, "JPEG", quality=85)
    image.crop((8, 6, SIZE[0] - 8, SIZE[1] - 6)).save(cropped, "PNG")
    return [original, small.getvalue(), cropped.getvalue()]


def find_duplicates(stack: RunningStack, collection: str, **extra: object) -> dict:
    response = stack.client.post("/v1/jobs/duplicates", json={"collection": collection, **extra})
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def test_an_image_its_resized_jpeg_and_its_crop_form_one_cluster(stack: RunningStack) -> None:
    blobs = variants(1) + [make_image(seed, size=SIZE) for seed in DISTINCT_SEEDS]
    job = embed(stack, "dupes", [{"upload_id": u} for u in upload(stack, blobs, "dupe")])
    assert job["state"] == "completed", job.get("error")
    ids = job["result"]["asset_ids"]

    job = find_duplicates(stack, "dupes")
    assert job["state"] == "completed", job.get("error")
    assert job["progress"] == {"total": 10, "succeeded": 10, "failed": 0}
    result = job["result"]
    assert (result["threshold"], result["scanned"]) == (0.95, 10)
    assert (result["cluster_count"], result["duplicate_count"]) == (1, 3)
    [cluster] = result["clusters"]
    assert cluster["asset_ids"] == sorted(ids[:3])
    assert 0.95 <= cluster["min_similarity"] <= 1.0

    # a looser threshold joins more; pages through the clusters agree with the result
    loose = find_duplicates(stack, "dupes", threshold=0.85)
    assert loose["state"] == "completed", loose
    clusters = loose["result"]["clusters"]
    sizes = [len(c["asset_ids"]) for c in clusters]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 3
    assert all(c["min_similarity"] >= 0.5 for c in clusters)
    first = stack.client.get(f"/v1/jobs/{loose['id']}/clusters", params={"limit": 1}).json()
    assert first["data"] == clusters[:1]
    if len(clusters) > 1:
        rest = stack.client.get(
            f"/v1/jobs/{loose['id']}/clusters", params={"cursor": first["next_cursor"]}
        ).json()
        assert first["data"] + rest["data"] == clusters and rest["next_cursor"] is None


def test_duplicates_of_a_missing_collection_and_bad_thresholds_are_refused(
    stack: RunningStack,
) -> None:
    if stack.backend != "lite":
        pytest.skip("request refusals: the same on either backend")
    missing = stack.client.post("/v1/jobs/duplicates", json={"collection": "no_such"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "collection_not_found"
    for threshold in (1.5, 0.1, "high"):
        bad = stack.client.post(
            "/v1/jobs/duplicates", json={"collection": "dupes", "threshold": threshold}
        )
        assert bad.status_code == 422, bad.text
        assert "threshold" in bad.json()["error"]["message"]
    search = stack.client.post(
        "/v1/jobs/search",
        params={"wait": 20},
        json={"collection": "dupes", "queries": [{"text": "x"}]},
    ).json()
    clusters = stack.client.get(f"/v1/jobs/{search['id']}/clusters")
    assert clusters.status_code == 409
    assert clusters.json()["error"]["code"] == "job_kind_mismatch"
