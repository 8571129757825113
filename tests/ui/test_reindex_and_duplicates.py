"""The collection upkeep views in a real browser against the running stack: a re-index to
the stack's second CLIP model (ASSETRAG_CLIP_MODELS) followed to its swap, with the old
version dropped; and near-duplicates found, one of a cluster kept and the other deleted.
Screenshots at laptop and phone width go to test-output/ui/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.browser import (
    assert_every_control_is_labelled,
    looks,
    shoot,
    shoot_phone,
    tile_images,
)
from tests.support.images import make_image
from tests.support.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
SIZE = (320, 240)
# Seeds whose images the test model keeps under 0.9 alike, against each other and seed 1
# (measured for tests/integration/test_duplicates.py); an image and its half-size copy
# score >= 0.999.
PAIRED_SEEDS = (1, 100)
DISTINCT_SEEDS = (102, 103, 106)


def half_size(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    image.resize((image.width // 2, image.height // 2)).save(out, "PNG")
    return out.getvalue()


def test_reindex_to_another_model_then_drop_the_old_version(
    page: Page, stack: RunningStack, other_clip: Path
) -> None:
    stack.ingest("ui_reindex", looks(6, start=300))
    page.goto("/#/reindex?collection=ui_reindex")
    assert_every_control_is_labelled(page)
    facts = page.locator("#reindex-facts")
    expect(facts).to_contain_text("ui_reindex answers from version 1")
    versions = page.locator("table.versions tbody tr")
    expect(versions).to_have_count(1)
    # the models come from GET /v1/meta; another model than the current one comes first
    model = page.get_by_label("New model")
    expect(model).to_have_value(str(other_clip))
    expect(model.locator("option", has_text="(current: a rebuild)")).to_have_count(1)
    page.get_by_role("button", name="Start re-index").click()

    run = page.locator(".run")
    expect(run).to_have_attribute("data-state", "completed")
    expect(run.get_by_role("status")).to_contain_text(
        "ui_reindex now answers from version 2 (other-clip.pt, 64-d) instead of version 1; "
        "version 1 stays until you drop it."
    )
    expect(run.locator("progress")).to_have_js_property("value", 6)
    expect(versions).to_have_count(2)
    current = page.locator("table.versions tr[aria-current]")
    expect(current).to_have_attribute("data-version", "2")
    expect(current).to_contain_text("other-clip.pt")
    expect(current.locator('td[data-label="Assets"]')).to_have_text("6")
    expect(facts).to_contain_text("answers from version 2")
    expect(facts).to_contain_text("64-d, 6 assets")
    shoot(page, "reindex")
    shoot_phone(page, "reindex-phone")

    # dropping the old version asks first; Cancel keeps it
    drop = page.locator('tr[data-version="1"]').get_by_role("button", name="Drop version 1")
    drop.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Drop version 1 of ui_reindex?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    shoot(page, "reindex-confirm", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(versions).to_have_count(2)
    drop.click()
    page.get_by_role("dialog").get_by_role("button", name="Drop version 1").click()
    expect(versions).to_have_count(1)
    expect(page.get_by_role("status").first).to_contain_text("Version 1 of ui_reindex dropped.")
    listed = stack.client.get("/v1/collections/ui_reindex/versions").json()["data"]
    assert [(v["version"], v["current"], v["model"]) for v in listed] == [
        (2, True, str(other_clip))
    ]
    # searches answer from the new version, with its model
    search = {"collection": "ui_reindex", "queries": [{"text": "anything"}], "top_k": 6}
    job = stack.client.post("/v1/jobs/search", params={"wait": 20}, json=search).json()
    assert job["state"] == "completed" and len(job["result"]["results"][0]) == 6, job


def test_duplicates_keep_the_one_picked_and_delete_the_other(
    page: Page, stack: RunningStack
) -> None:
    files = []
    for name, seed in zip(("shawl", "scarf"), PAIRED_SEEDS, strict=True):
        original = make_image(seed, size=SIZE)
        files += [(f"{name}.png", original), (f"{name}_small.png", half_size(original))]
    files += [(f"other_{seed}.png", make_image(seed, size=SIZE)) for seed in DISTINCT_SEEDS]
    ids = dict(zip([name for name, _ in files], stack.ingest("ui_dupes", files), strict=True))

    page.goto("/#/duplicates?collection=ui_dupes")
    assert_every_control_is_labelled(page)
    # the threshold's bounds and default are the contract's (the OpenAPI schema's)
    threshold = page.get_by_label("Alike")
    expect(threshold).to_have_value("0.95")
    expect(threshold).to_have_attribute("min", "0.5")
    page.get_by_role("button", name="Find duplicates").click()
    clusters = page.locator(".cluster")
    expect(clusters).to_have_count(2)
    run = page.locator(".run")
    expect(run.get_by_role("heading")).to_have_text("ui_dupes, at 0.95 or more alike")
    expect(run.get_by_role("status")).to_have_text(
        "2 clusters of near-duplicates (4 assets) among 7 compared."
    )
    shawl = clusters.filter(has=page.get_by_text("shawl_small.png"))
    expect(shawl.locator(".tile")).to_have_count(2)
    # the larger image is the one kept unless another is picked
    expect(shawl.get_by_label("Keep shawl.png", exact=True)).to_be_checked()
    shawl.get_by_label("Keep shawl_small.png").check()
    delete = shawl.get_by_role("button", name="Delete the other asset")
    expect(delete).to_be_visible()
    shoot(page, "duplicates")
    assert all(t["width"] for t in tile_images(page, ".cluster")), tile_images(page, ".cluster")
    shoot_phone(page, "duplicates-phone")

    delete.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete 1 asset from ui_dupes?")
    expect(dialog).to_contain_text("shawl_small.png stays. shawl.png will no longer be found")
    shoot(page, "duplicates-confirm", full_page=False)
    dialog.get_by_role("button", name="Delete").click()
    expect(shawl).to_have_attribute("data-state", "resolved")
    expect(shawl.get_by_role("status")).to_have_text("Kept shawl_small.png; deleted 1.")
    expect(shawl.locator(".tile.gone")).to_contain_text("deleted")
    expect(page.get_by_label("Collection")).to_contain_text("ui_dupes (6)")
    shoot(page, "duplicates-resolved")

    assert stack.client.get("/v1/collections/ui_dupes").json()["count"] == 6
    assets = "/v1/collections/ui_dupes/assets"
    assert stack.client.get(f"{assets}/{ids['shawl.png']}").status_code == 404
    assert stack.client.get(f"{assets}/{ids['shawl_small.png']}").status_code == 200
    # the other cluster is untouched
    assert stack.client.get(f"{assets}/{ids['scarf.png']}").status_code == 200
