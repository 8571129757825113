"""Brand kits through the real path: kits and their versions over HTTP (per tenant), generation
with a kit (its references sent as style sources, its style before the prompt, each output
scored on a query worker and made again when it falls short), and the library audit.

Exact expectations only (the test model's weights are random): a kit of one asset scores that
asset 1.0; a likeness above 1 can never be reached, so every attempt is made; solid colours
have known CIEDE2000 distances (black to white is 100)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from tests.support.images import make_image
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
LIBRARY = "brand_library"


def solid(rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def assets(stack: RunningStack) -> list[str]:
    files = [(f"look_{i}.png", make_image(8100 + i)) for i in range(4)]
    files += [("black.png", solid((0, 0, 0))), ("white.png", solid((255, 255, 255)))]
    return stack.ingest(LIBRARY, files)


def make_kit(stack: RunningStack, name: str, **body: Any) -> dict[str, Any]:
    body.setdefault("collection", LIBRARY)
    response = stack.client.post("/v1/kits", json={"name": name, **body})
    assert response.status_code == 201, response.text
    return response.json()


def generate(stack: RunningStack, **body: Any) -> dict[str, Any]:
    body.setdefault("collection", LIBRARY)
    response = stack.client.post("/v1/jobs/generate", json=body)
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def test_an_output_that_can_never_pass_is_made_attempts_times_and_ends_off_brand(
    stack: RunningStack, assets: list[str], fake_gemini: Any
) -> None:
    name = f"never-{stack.backend}"
    make_kit(
        stack,
        name,
        references=assets[:2],
        style="soft morning light, linen textures",
        palette=["#C8102E", "#FFFFFF"],
        checks={"min_similarity": 1.5, "attempts": 3},
    )
    prompt = stack.tag("a scarf on a chair")
    job = generate(stack, prompt=prompt, kit=name, save_to_collection=True)
    assert job["state"] == "completed", job
    result = job["result"]
    sent = sorted(fake_gemini.requests_for(prompt), key=lambda r: r.received_at)
    assert len(sent) == 3  # exactly `attempts` calls
    assert all(r.reference_count == 2 for r in sent)  # the kit's references, as style
    first_texts = [p for p in sent[0].parts if p.startswith("text:")]
    assert first_texts[0].startswith("text:Image 1 is a style reference (the never-")
    assert first_texts[-2] == (
        f"text:Brand {name}: follow its style references. soft morning light, linen "
        "textures Use the brand palette: #C8102E, #FFFFFF."
    )
    assert "fell short of the brand" not in sent[0].parts[-2]
    assert sent[1].parts[-2].startswith("text:The last attempt fell short of the brand: its ")
    assert "at least 1.50 is wanted" in sent[1].parts[-2]
    brand = result["brand"]
    assert brand["kit"] == f"{name}@1"
    assert brand["passed"] is False and brand["code"] == "off_brand" and brand["attempts"] == 3
    assert -1.0 <= brand["similarity"] <= 1.0 and brand["palette_distance"] >= 0
    [image] = result["images"]
    assert image["brand"]["passed"] is False
    assert result["usage"]["calls"] == 3 and result["usage"]["images_returned"] == 3
    # the kept attempt's image is the one saved, with the kit in its lineage
    record = stack.client.get(f"/v1/collections/{LIBRARY}/assets/{image['asset_id']}").json()
    assert record["metadata"]["lineage"]["kit"] == f"{name}@1"
    assert record["metadata"]["lineage"]["brand"]["attempts"] == 3


def test_an_output_that_passes_is_made_once(
    stack: RunningStack, assets: list[str], fake_gemini: Any
) -> None:
    name = f"easy-{stack.backend}"
    make_kit(stack, name, references=assets[2:3], checks={"min_similarity": -1, "attempts": 4})
    prompt = stack.tag("an easy brand shot")
    job = generate(stack, items=[{"prompt": prompt, "kit": name}, {"prompt": stack.tag("plain")}])
    assert job["state"] == "completed", job
    assert len(fake_gemini.requests_for(prompt)) == 1
    lines = [
        json.loads(line)
        for line in stack.client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    ]
    assert lines[0]["result"]["brand"]["passed"] is True
    assert lines[0]["result"]["brand"]["attempts"] == 1
    assert lines[1]["result"].get("brand") is None
