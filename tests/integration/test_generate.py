"""Generation through the real worker path: API → generate worker → google-genai → fake Gemini."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import pytest
from PIL import Image

from tests.support.images import make_image
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
COLLECTION = "genrefs"


@pytest.fixture(scope="module")
def references(stack: RunningStack) -> list[str]:
    files = [(f"ref_{i}.png", make_image(500 + i, size=(1600, 900))) for i in range(4)]
    return stack.ingest(COLLECTION, files)


def generate(stack: RunningStack, **body: Any) -> dict[str, Any]:
    body.setdefault("collection", COLLECTION)
    response = stack.client.post("/v1/jobs/generate", json=body)
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def test_generation_with_named_references_and_image_config(
    stack: RunningStack, references: list[str], fake_gemini: Any
) -> None:
    prompt = stack.tag("a poster of the red shawl, studio light")
    job = generate(
        stack,
        prompt=prompt,
        references={"asset_ids": references[:2]},
        aspect_ratio="16:9",
        image_size="2K",
    )
    assert job["state"] == "completed", job
    result = job["result"]
    assert result["references"] == references[:2]
    assert result["model"]
    [image] = result["images"]
    assert (image["width"], image["height"]) == (224, 126)
    png = stack.client.get(image["content_url"])
    assert png.status_code == 200
    assert Image.open(io.BytesIO(png.content)).size == (224, 126)
    [request] = fake_gemini.requests_for(prompt)
    assert request.reference_count == 2
    assert request.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert request.model == "gemini-3.1-flash-image"
    assert request.part_kinds[0] == "text"
    # references were downscaled before sending (the originals are 1600 px wide)
    assert "image/jpeg" in request.reference_mime_types


def test_thought_parts_are_not_results(
    stack: RunningStack, references: list[str], fake_gemini: Any
) -> None:
    prompt = stack.tag("thoughtful variant")
    job = generate(stack, prompt=prompt, references={"asset_ids": references[:1]})
    [request] = fake_gemini.requests_for(prompt)
    assert request.thought_image_sha256, "the fake sent a thought image"
    [image] = job["result"]["images"]
    digest = hashlib.sha256(stack.client.get(image["content_url"]).content).hexdigest()
    assert digest in request.final_image_sha256
    assert digest not in request.thought_image_sha256


def test_query_references_count_and_lineage(
    stack: RunningStack, references: list[str], fake_gemini: Any
) -> None:
    job = generate(
        stack,
        prompt=stack.tag("a catalogue page [slow:1]"),
        references={"query": "red dress", "top_k": 3},
        count=3,
        save_to_collection=True,
    )
    assert job["state"] == "completed", job
    result = job["result"]
    assert len(result["references"]) == 3 and set(result["references"]) <= set(references)
    assert job["progress"] == {"total": 3, "succeeded": 3, "failed": 0}
    assert len(result["images"]) == 3
    pages = fake_gemini.requests_for(stack.tag("a catalogue page [slow:1]"))
    arrivals = [r.received_at for r in pages]
    assert max(arrivals) - min(arrivals) < 0.5, "the three calls ran side by side"
    for image in result["images"]:
        record = stack.client.get(f"/v1/collections/{COLLECTION}/assets/{image['asset_id']}").json()
        lineage = record["metadata"]["lineage"]
        assert lineage["job_id"] == job["id"]
        assert lineage["references"] == result["references"]
        assert lineage["prompt"].startswith("a catalogue page")
        assert lineage["model"] == result["model"]
    hits = stack.client.post(
        "/v1/jobs/search",
        params={"wait": 20},
        json={"collection": COLLECTION, "queries": [{"asset_id": result["images"][0]["asset_id"]}]},
    ).json()
    assert hits["result"]["results"][0][0]["asset_id"] == result["images"][0]["asset_id"]


def test_retry_then_success(stack: RunningStack, fake_gemini: Any) -> None:
    prompt = stack.tag("busy upstream [fail:429x2] [retry-after:0.2]")
    job = generate(stack, prompt=prompt)
    assert job["state"] == "completed", job
    assert len(fake_gemini.requests_for(prompt)) == 3


@pytest.mark.parametrize(
    ("prompt", "code", "reason"),
    [
        ("unsafe [block:prompt]", "blocked", "SAFETY"),
        ("unsafe image [block:image]", "blocked", "IMAGE_SAFETY"),
        ("just words [text-only]", "no_image", None),
        ("broken upstream [fail:500]", "upstream_error", None),
    ],
)
def test_failures_fail_the_job_clearly(
    stack: RunningStack, prompt: str, code: str, reason: str | None
) -> None:
    job = generate(stack, prompt=prompt)
    assert job["state"] == "failed"
    assert job["error"]["code"] == code
    if reason:
        assert reason in job["error"]["message"]
    if code == "upstream_error":
        assert "500" in job["error"]["message"]


def test_many_slow_calls_run_concurrently(stack: RunningStack) -> None:
    started = time.monotonic()
    ids = [
        stack.client.post(
            "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": f"slow job {i} [slow:2]"}
        ).json()["id"]
        for i in range(12)
    ]
    jobs = [stack.wait_job(i) for i in ids]
    assert all(j["state"] == "completed" for j in jobs)
    assert time.monotonic() - started < 10, "twelve 2-second calls must overlap"


def test_submit_refusals(stack: RunningStack, references: list[str]) -> None:
    post = stack.client.post
    assert (
        post("/v1/jobs/generate", json={"collection": COLLECTION, "prompt": ""}).status_code == 422
    )
    assert (
        post(
            "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": "x" * 20000}
        ).status_code
        == 422
    )
    assert (
        post(
            "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": "p", "count": 5}
        ).status_code
        == 422
    )
    bad_ratio = post(
        "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": "p", "aspect_ratio": "7:3"}
    )
    assert bad_ratio.status_code == 422
    assert (
        post(
            "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": "p", "image_size": "8K"}
        ).status_code
        == 422
    )
    missing = post(
        "/v1/jobs/generate",
        json={"collection": COLLECTION, "prompt": "p", "references": {"asset_ids": ["0" * 64]}},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "asset_not_found"
