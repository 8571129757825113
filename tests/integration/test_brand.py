"""Brand kits through the real path: kits and their versions over HTTP (per tenant), generation
with a kit (its references sent as style sources, its style before the prompt, each output
scored on a query worker and made again when it falls short), and the library audit.

Exact expectations only (the test model's weights are random): a kit of one asset scores that
asset 1.0; a likeness above 1 can never be reached, so every attempt is made; solid colours
have known CIEDE2000 distances (black to white is 100)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.images import make_image
from tests.support.stack import RunningStack, assetrag

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
    assert image["brand"]["passed"] is False and image["brand"]["attempts"] == 3
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


def test_the_audit_scores_every_asset_and_lists_the_worst_first(
    stack: RunningStack, assets: list[str]
) -> None:
    black, white = assets[4], assets[5]
    name = f"noir-{stack.backend}"
    make_kit(
        stack,
        name,
        references=[black],
        palette=["#000000"],
        checks={"min_similarity": 0.999, "max_palette_distance": 1.0},
    )
    response = stack.client.post("/v1/jobs/brand-check", json={"collection": LIBRARY, "kit": name})
    assert response.status_code in (200, 202), response.text
    job = stack.wait_job(response.json()["id"])
    assert job["state"] == "completed", job
    result = job["result"]
    assert result["kit"] == f"{name}@1"
    count = stack.client.get(f"/v1/collections/{LIBRARY}").json()["count"]  # outputs saved too
    assert result["checked"] == count and result["passed"] + result["failed"] == count
    lines = [
        json.loads(line)["result"]
        for line in stack.client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    ]
    scores = {line["asset_id"]: line for line in lines}
    assert len(scores) == count and set(assets) <= set(scores)
    # a kit of one asset: that asset is itself, on-palette, and the most alike
    assert scores[black]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert scores[black]["palette_distance"] == pytest.approx(0.0, abs=1e-6)
    assert scores[black]["passed"] is True
    assert max(line["similarity"] for line in lines) == scores[black]["similarity"]
    # black to white is 100 in CIEDE2000
    assert scores[white]["palette_distance"] == pytest.approx(100.0, abs=1e-3)
    assert scores[white]["passed"] is False
    worst = result["worst"]
    assert worst[-1]["asset_id"] == black  # the only one to pass comes last
    failed = [w for w in worst if not w["passed"]]
    assert [w["similarity"] for w in failed] == sorted(w["similarity"] for w in failed)
    # a filter picks which assets are checked
    picked = stack.client.post(
        "/v1/jobs/brand-check",
        json={"collection": LIBRARY, "kit": name, "filter": {"filename": "white.png"}},
    ).json()
    picked = stack.wait_job(picked["id"])
    assert picked["result"]["checked"] == 1 and picked["result"]["worst"][0]["asset_id"] == white


def test_kits_keep_their_versions_and_refuse_what_cannot_be_a_kit(
    stack: RunningStack, assets: list[str]
) -> None:
    if stack.backend != "lite":
        pytest.skip("request refusals: the same on either backend")
    name = "versions"
    first = make_kit(stack, name, references=assets[:1], palette=["#112233"])
    assert first["version"] == 1
    again = stack.client.post(
        "/v1/kits", json={"name": name, "collection": LIBRARY, "references": assets[:1]}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "kit_exists"
    second = stack.client.put(
        f"/v1/kits/{name}",
        json={"collection": LIBRARY, "references": assets[1:3], "style": "pastel"},
    )
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    assert stack.client.get(f"/v1/kits/{name}").json()["references"] == assets[1:3]
    assert stack.client.get(f"/v1/kits/{name}@1").json()["palette"] == ["#112233"]
    versions = stack.client.get(f"/v1/kits/{name}/versions").json()["data"]
    assert [v["version"] for v in versions] == [1, 2]
    assert name in [k["name"] for k in stack.client.get("/v1/kits").json()["data"]]
    # a job pins the version it was given
    job = stack.client.post(
        "/v1/jobs/brand-check", json={"collection": LIBRARY, "kit": name}
    ).json()
    assert stack.wait_job(job["id"])["result"]["kit"] == f"{name}@2"
    assert stack.client.delete(f"/v1/kits/{name}").status_code == 204
    assert stack.client.get(f"/v1/kits/{name}").status_code == 404
    old = stack.client.get(f"/v1/kits/{name}@1")
    assert old.status_code == 200 and old.json()["deleted"] is True  # kept for lineage

    def refused(body: dict[str, Any]) -> tuple[int, str]:
        response = stack.client.post("/v1/kits", json={"name": "bad", **body})
        return response.status_code, response.json()["error"]["code"]

    ok = {"collection": LIBRARY, "references": assets[:1]}
    assert refused({**ok, "palette": ["red"]}) == (422, "invalid_request")
    assert refused({**ok, "palette": ["#000000"] * 9}) == (422, "invalid_request")
    assert refused({**ok, "references": [assets[0]] * 11}) == (422, "invalid_request")
    assert refused({**ok, "references": ["0" * 64]}) == (404, "asset_not_found")
    assert refused({**ok, "collection": "no_such_shelf"}) == (404, "collection_not_found")
    assert refused({**ok, "checks": {"attempts": 6}}) == (422, "invalid_request")
    missing = stack.client.post(
        "/v1/jobs/generate", json={"collection": LIBRARY, "prompt": "x", "kit": "no-such-kit"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "kit_not_found"
    make_kit(stack, "batchy", references=assets[:1])
    batch = stack.client.post(
        "/v1/jobs/generate",
        json={"collection": LIBRARY, "prompt": "x", "kit": "batchy", "mode": "batch"},
    )
    assert batch.status_code == 422 and "mode interactive" in batch.json()["error"]["message"]


def test_a_tenant_sees_only_its_own_kits(stack: RunningStack) -> None:
    if stack.backend != "lite":
        pytest.skip("tenants: the same on either backend")
    from tests.support.mcp import keyed_api

    with keyed_api(stack, "k-alpha:alpha,k-beta:beta", "kits-keyed") as url:
        alpha = httpx.Client(base_url=url, headers={"Authorization": "Bearer k-alpha"}, timeout=60)
        beta = httpx.Client(base_url=url, headers={"Authorization": "Bearer k-beta"}, timeout=60)
        upload = alpha.post(
            "/v1/uploads", files=[("files", ("a.png", make_image(8300), "image/png"))]
        ).json()["uploads"][0]
        job = alpha.post(
            "/v1/jobs/embed",
            params={"wait": 20},
            json={"collection": "house", "items": [{"upload_id": upload["upload_id"]}]},
        ).json()
        while job["state"] not in ("completed", "failed"):
            job = alpha.get(f"/v1/jobs/{job['id']}", params={"wait": 10}).json()
        [asset] = job["result"]["asset_ids"]
        made = alpha.post(
            "/v1/kits", json={"name": "house", "collection": "house", "references": [asset]}
        )
        assert made.status_code == 201, made.text
        assert "house" in [k["name"] for k in alpha.get("/v1/kits").json()["data"]]
        assert beta.get("/v1/kits").json()["data"] == []
        assert beta.get("/v1/kits/house").status_code == 404
        assert beta.get("/v1/kits/house@1").status_code == 404
        assert beta.delete("/v1/kits/house").status_code == 404
        used = beta.post(
            "/v1/jobs/generate", json={"collection": "house", "prompt": "x", "kit": "house"}
        )
        assert used.status_code == 404 and used.json()["error"]["code"] == "kit_not_found"
        # beta's own kit of the same name lives beside alpha's
        theirs = beta.post(
            "/v1/kits", json={"name": "house", "collection": "house", "references": [asset]}
        )
        assert theirs.status_code == 404  # alpha's collection is not beta's


def test_the_cli_makes_a_kit_generates_with_it_and_audits(
    stack: RunningStack, assets: list[str], tmp_path: Path
) -> None:
    if stack.backend != "lite":
        pytest.skip("the CLI speaks HTTP: the same on either backend")
    made = assetrag(
        stack,
        "kit",
        "create",
        "cli-kit",
        "-c",
        LIBRARY,
        "--ref",
        assets[0],
        "--palette",
        "#000000,#FFFFFF",
        "--min-similarity",
        "1.5",
        "--attempts",
        "2",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "kit cli-kit@1" in made.stdout and "attempts 2, similarity >= 1.5" in made.stdout
    updated = assetrag(
        stack, "kit", "create", "cli-kit", "-c", LIBRARY, "--ref", assets[1], "--update"
    )
    assert "kit cli-kit@2" in updated.stdout, updated.stdout + updated.stderr
    listed = assetrag(stack, "kit", "list")
    assert "cli-kit@2" in listed.stdout
    shown = assetrag(stack, "kit", "show", "cli-kit", "--versions")
    assert "cli-kit@1" in shown.stdout and "cli-kit@2" in shown.stdout
    out = tmp_path / "kit.png"
    generated = assetrag(
        stack, "generate", "a shelf ~cli-kit", "-c", LIBRARY, "--kit", "cli-kit@1", "-o", str(out)
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "brand cli-kit@1: off_brand" in generated.stdout and "2 attempt(s)" in generated.stdout
    audited = assetrag(
        stack, "brand-check", "-c", LIBRARY, "--kit", "cli-kit", "-o", str(tmp_path / "r.jsonl")
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "checked against cli-kit@2" in audited.stdout
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) >= len(assets)
    assert assetrag(stack, "kit", "delete", "cli-kit").returncode == 0
    assert assetrag(stack, "kit", "show", "cli-kit").returncode != 0
