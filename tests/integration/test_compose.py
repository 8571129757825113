"""Compositions through the real path (API → query worker → generate worker → google-genai →
the Gemini-protocol test server → embed worker): a photo as the subject, several searches
(one in another collection), named assets; an edit that chains back; one scene in several
formats; and every refusal at submit.

The test server records the parts each request carried, in order, so the tests read exactly
what Gemini was shown. References are downscaled before sending, so an image is recognised by
the digest of `downscale(its bytes)` with the stack's settings."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from shared.images import downscale
from shared.settings import Settings
from tests.support.images import make_image
from tests.support.stack import RunningStack, assetrag, upload

pytestmark = pytest.mark.integration
LIBRARY = "compose_wardrobe"
PROPS = "compose_props"
PLAYER = make_image(4242, size=(640, 800))


def sent(data: bytes) -> str:
    """The digest of an image as a reference is sent (downscaled with the default settings)."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    small, _ = downscale(data, settings.reference_max_side, settings.max_image_pixels)
    return hashlib.sha256(small).hexdigest()


@pytest.fixture(scope="module")
def library(stack: RunningStack) -> dict[str, list[str]]:
    wardrobe = [(f"shawl_{i}.png", make_image(7100 + i)) for i in range(5)]
    props = [(f"watch_{i}.png", make_image(7200 + i)) for i in range(3)]
    return {LIBRARY: stack.ingest(LIBRARY, wardrobe), PROPS: stack.ingest(PROPS, props)}


def submit(stack: RunningStack, **body: Any) -> dict[str, Any]:
    body.setdefault("collection", LIBRARY)
    response = stack.client.post("/v1/jobs/generate", json=body)
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def refused(stack: RunningStack, **body: Any) -> tuple[int, str, str]:
    body.setdefault("collection", LIBRARY)
    body.setdefault("prompt", "x")
    response = stack.client.post("/v1/jobs/generate", json=body)
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def images_of(request: Any) -> list[str]:
    return [part.removeprefix("image:") for part in request.parts if part.startswith("image:")]


def content(stack: RunningStack, url: str) -> bytes:
    response = stack.client.get(url)
    assert response.status_code == 200, response.text
    return response.content


def test_a_player_photo_dressed_in_searched_accessories(
    stack: RunningStack, library: dict[str, list[str]], fake_gemini: Any
) -> None:
    [player] = upload(stack, [PLAYER], "player")
    named = library[LIBRARY][4]
    prompt = stack.tag("the player wearing these, on a beach")
    job = submit(
        stack,
        prompt=prompt,
        references=[
            {"query": "a red shawl", "top_k": 2, "label": "the red shawl"},
            {"upload_id": player, "role": "subject", "label": "the player"},
            {"query": "a gold watch", "top_k": 1, "collection": PROPS},
            {"asset_ids": [named], "role": "style"},
        ],
        save_to_collection=True,
    )
    assert job["state"] == "completed", job
    result = job["result"]

    # What Gemini was shown: the subject first, then the rest as given, each after its caption;
    # the user's prompt, unchanged, last.
    [request] = fake_gemini.requests_for(prompt)
    assert request.part_kinds == ["text", "image"] * 5 + ["text"]
    texts = [p.removeprefix("text:") for p in request.parts if p.startswith("text:")]
    assert texts[0].startswith("Image 1 shows the subject to keep (the player)")
    assert texts[1] == "Image 2 shows an item to include (the red shawl)."
    assert texts[2] == "Image 3 shows an item to include (the red shawl)."
    assert texts[3] == "Image 4 shows an item to include (a gold watch)."
    assert texts[4].startswith("Image 5 is a style reference: follow its look")
    assert texts[-1] == prompt
    assert images_of(request)[0] == sent(PLAYER)

    # The sources as used, in the order sent, with what each found.
    subject, shawl, watch, style = result["sources"]
    assert subject == {
        "kind": "upload",
        "role": "subject",
        "label": "the player",
        "upload_id": player,
        "sha256": hashlib.sha256(PLAYER).hexdigest(),
        "hits": [],
        "collection": None,
        "query": None,
        "url": None,
    }
    assert shawl["kind"] == "query" and shawl["query"] == "a red shawl"
    assert [h["collection"] for h in shawl["hits"]] == [LIBRARY, LIBRARY]
    scores = [h["score"] for h in shawl["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert {h["asset_id"] for h in shawl["hits"]} <= set(library[LIBRARY])
    [watch_hit] = watch["hits"]
    assert watch_hit["collection"] == PROPS and watch_hit["asset_id"] in library[PROPS]
    assert style["role"] == "style" and style["hits"][0]["asset_id"] == named
    assert result["references"] == [h["asset_id"] for s in result["sources"] for h in s["hits"]]

    # The saved output's lineage names every source.
    [image] = result["images"]
    lineage = stack.client.get(f"/v1/collections/{LIBRARY}/assets/{image['asset_id']}/lineage")
    assert lineage.status_code == 200, lineage.text
    chain = lineage.json()
    [step] = chain["steps"]
    assert step["prompt"] == prompt and step["sources"] == result["sources"]
    assert {(o["collection"], o["asset_id"]) for o in chain["originals"]} == {
        (h["collection"], h["asset_id"]) for s in result["sources"] for h in s["hits"]
    }
    assert [u["sha256"] for u in chain["uploads"]] == [hashlib.sha256(PLAYER).hexdigest()]
    # an asset not made here is its own original
    plain = stack.client.get(f"/v1/collections/{LIBRARY}/assets/{named}/lineage").json()
    assert plain["steps"] == [] and plain["originals"][0]["asset_id"] == named


def test_an_edit_sends_the_base_first_and_chains_back_to_the_originals(
    stack: RunningStack, library: dict[str, list[str]], fake_gemini: Any
) -> None:
    [first] = submit(
        stack,
        prompt=stack.tag("a model in the shawl"),
        references=[{"asset_ids": library[LIBRARY][:1]}],
        save_to_collection=True,
    )["result"]["images"]
    made = content(stack, first["content_url"])
    instruction = stack.tag("now make the shawl blue")
    edit = submit(
        stack,
        prompt=instruction,
        references=[
            {"asset_ids": [library[PROPS][0]], "collection": PROPS, "label": "the watch"},
            {"asset_ids": [first["asset_id"]], "role": "base"},
        ],
        save_to_collection=True,
    )
    assert edit["state"] == "completed", edit
    [request] = fake_gemini.requests_for(instruction)
    assert request.parts[0].startswith("text:Image 1 is the base image to edit")
    assert images_of(request)[0] == sent(made)
    [edited] = edit["result"]["images"]
    chain = stack.client.get(
        f"/v1/collections/{LIBRARY}/assets/{edited['asset_id']}/lineage"
    ).json()
    assert [s["asset_id"] for s in chain["steps"]] == [edited["asset_id"], first["asset_id"]]
    assert chain["steps"][0]["prompt"] == instruction
    assert {o["asset_id"] for o in chain["originals"]} == {
        library[LIBRARY][0],
        library[PROPS][0],
    }


def test_one_scene_in_three_formats_sends_the_first_as_the_base_of_the_others(
    stack: RunningStack, library: dict[str, list[str]], fake_gemini: Any
) -> None:
    prompt = stack.tag("the campaign scene")
    job = submit(
        stack,
        prompt=prompt,
        references=[{"asset_ids": library[LIBRARY][1:2], "label": "the shawl"}],
        aspect_ratios=["1:1", "9:16", "16:9"],
        save_to_collection=True,
    )
    assert job["state"] == "completed", job
    images = job["result"]["images"]
    assert [i["aspect_ratio"] for i in images] == ["1:1", "9:16", "16:9"]
    assert images[1]["width"] < images[1]["height"] and images[2]["width"] > images[2]["height"]
    requests = sorted(fake_gemini.requests_for(prompt), key=lambda r: r.received_at)
    assert [r.image_config["aspectRatio"] for r in requests][0] == "1:1"
    square = content(stack, images[0]["content_url"])
    shawl = images_of(requests[0])
    for later in requests[1:]:
        assert later.parts[0].startswith("text:Image 1 is this same scene, made before")
        assert images_of(later) == [sent(square), *shawl]
    usage = job["result"]["usage"]
    assert usage["calls"] == 3 and usage["images_returned"] == 3
    tall = stack.client.get(
        f"/v1/collections/{LIBRARY}/assets/{images[1]['asset_id']}/lineage"
    ).json()
    assert tall["steps"][0]["aspect_ratio"] == "9:16"
    assert tall["steps"][0]["sources"][0]["kind"] == "output"
    assert [s["asset_id"] for s in tall["steps"]] == [images[1]["asset_id"], images[0]["asset_id"]]


def test_shoot_once_one_subject_many_outfits_in_one_bulk_job(
    stack: RunningStack, library: dict[str, list[str]], fake_gemini: Any
) -> None:
    [model] = upload(stack, [PLAYER], "base_model")
    subject = {"upload_id": model, "role": "subject", "label": "our model"}
    outfits = ["a red shawl", "a blue dress"]
    job = submit(
        stack,
        items=[
            {
                "prompt": stack.tag(f"our model wearing {outfit}, studio"),
                "references": [subject, {"query": outfit, "top_k": 1, "label": outfit}],
                "metadata": {"outfit": outfit},
            }
            for outfit in outfits
        ],
    )
    assert job["state"] == "completed", job
    lines = [
        json.loads(line)
        for line in stack.client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    ]
    assert [line["status"] for line in lines] == ["succeeded", "succeeded"]
    for line, outfit in zip(lines, outfits, strict=True):
        sources = line["result"]["sources"]
        assert [s["role"] for s in sources] == ["subject", "item"]
        assert sources[1]["query"] == outfit and line["result"]["metadata"] == {"outfit": outfit}
        [request] = fake_gemini.requests_for(stack.tag(f"our model wearing {outfit}, studio"))
        assert images_of(request)[0] == sent(PLAYER)


def test_a_query_that_finds_nothing_fails_its_item_clearly(
    stack: RunningStack, library: dict[str, list[str]]
) -> None:
    job = submit(
        stack,
        prompt=stack.tag("nothing to wear"),
        references=[{"query": "a hat", "filter": {"filename": "no_such_file.png"}}],
    )
    assert job["state"] == "failed"
    assert job["error"]["code"] == "no_references_found"
    assert "'a hat' found nothing in compose_wardrobe" in job["error"]["message"]


def test_the_cli_composes_a_subject_searches_and_formats(
    stack: RunningStack, library: dict[str, list[str]], tmp_path: Path, fake_gemini: Any
) -> None:
    if stack.backend != "lite":
        pytest.skip("the CLI speaks HTTP: the same on either backend")
    photo = tmp_path / "player.png"
    photo.write_bytes(PLAYER)
    prompt = "the player in the shawl and the watch ~cli"
    out = tmp_path / "out"
    ran = assetrag(
        stack,
        "generate",
        prompt,
        "-c",
        LIBRARY,
        "--subject",
        str(photo),
        "--item",
        "red shawl",
        "--item",
        "gold watch:2",
        "--ref",
        library[LIBRARY][3],
        "--formats",
        "1:1,9:16",
        "-o",
        f"{out}/",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and files[0].endswith("-1x1.png") and files[1].endswith("-9x16.png")
    with Image.open(io.BytesIO((out / files[1]).read_bytes())) as tall:
        assert tall.width < tall.height
    assert "subject 'player': upload" in ran.stdout
    assert "item 'gold watch': query" in ran.stdout
    first = min(fake_gemini.requests_for(prompt), key=lambda r: r.received_at)
    assert first.part_kinds == ["text", "image"] * 5 + ["text"]  # 1 + 1 + 2 + 1 images
    assert images_of(first)[0] == sent(PLAYER)


def test_compositions_that_cannot_be_made_are_refused_at_submit(
    stack: RunningStack, library: dict[str, list[str]]
) -> None:
    if stack.backend != "lite":
        pytest.skip("request refusals: the same on either backend")
    asset = library[LIBRARY][0]
    [photo] = upload(stack, [PLAYER], "refused")
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        (
            {"references": [{"query": "x", "top_k": 14}, {"asset_ids": [asset]}]},
            422,
            "option_not_supported",
            "15 reference images",
        ),
        (
            {"references": [{"query": "x", "top_k": 14}], "aspect_ratios": ["1:1", "9:16"]},
            422,
            "option_not_supported",
            "15 reference images",  # the first format's output is sent to the second too
        ),
        (
            {"references": [{"upload_id": photo, "role": "subject"}] * 5},
            422,
            "option_not_supported",
            "5 subject images",
        ),
        (
            {"references": [{"asset_ids": [asset], "role": "base"}] * 2},
            422,
            "invalid_references",
            "2 bases",
        ),
        (
            {"references": [{"query": "x", "top_k": 2, "role": "base"}]},
            422,
            "invalid_references",
            "a base is one image",
        ),
        (
            {"references": [{"upload_id": "A" * 24}]},
            404,
            "upload_not_found",
            "AAAA",
        ),
        (
            {"references": [{"asset_ids": ["0" * 64]}]},
            404,
            "asset_not_found",
            "0000",
        ),
        (
            {"references": [{"query": "x", "collection": "no_such_shelf"}]},
            404,
            "collection_not_found",
            "no_such_shelf",
        ),
        (
            {"references": [{"url": "http://127.0.0.1:9/shawl.png"}]},
            422,
            "forbidden_address",
            "non-public",
        ),
        ({"references": [{"role": "item"}]}, 422, "invalid_request", "exactly one of"),
        (
            {"references": [{"asset_ids": [asset], "query": "x"}]},
            422,
            "invalid_request",
            "exactly one of",
        ),
        ({"references": [{"url": "https://e.com/a.png", "top_k": 2}]}, 422, "invalid_request", ""),
        ({"aspect_ratio": "1:1", "aspect_ratios": ["9:16"]}, 422, "invalid_request", ""),
        ({"aspect_ratios": ["1:1", "1:1"]}, 422, "invalid_request", "each aspect ratio once"),
        (
            {"aspect_ratios": ["1:1", "9:16"], "mode": "batch"},
            422,
            "option_not_supported",
            "mode interactive",
        ),
    ]
    for body, status, code, words in cases:
        got = refused(stack, **body)
        assert got[:2] == (status, code), (body, got)
        assert words in got[2], (body, got)
