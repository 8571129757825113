"""Each page of the web UI in a real browser against the running stack (tiny CLIP model, fake
Gemini). Every test leaves a screenshot under test-output/ui/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import (
    API_KEY,
    CATALOGUE,
    CATALOGUE_SIZE,
    assert_every_control_is_labelled,
    drop_files,
    looks,
    open_page,
    settle,
    shoot,
    shoot_phone,
    slow_network,
    tile_images,
)
from tests.support.stack import RunningStack

# The pages are the same on either vector store: the API's tests run on both.
pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]


def search_text(page: Page, text: str, top_k: int) -> None:
    page.goto("/#/search")
    page.get_by_label("Collection").select_option(CATALOGUE)
    page.get_by_label("Describe what you are looking for").fill(text)
    page.get_by_label("Results").fill(str(top_k))
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator(".results .tile")).to_have_count(top_k)


def scores(page: Page) -> list[float]:
    return [float(s) for s in page.locator(".results .score").all_inner_texts()]


def test_ingest_by_drag_and_drop(page: Page, stack: RunningStack) -> None:
    page.goto("/#/ingest")
    assert_every_control_is_labelled(page)
    page.get_by_label("Collection").fill("ui_ingest")
    files = looks(6, start=100) + [("notes.png", b"not an image at all")]
    drop_files(page, ".drop", files)
    run = page.locator(".run").first
    expect(run).to_have_attribute("data-state", "completed")
    embed = run.locator("progress.embed")
    expect(embed).to_have_attribute("max", "6")
    assert embed.evaluate("el => el.value") == 6
    expect(run.locator("progress.upload")).to_have_js_property("value", 7)
    expect(run.get_by_role("status")).to_contain_text("6 stored, 1 failed")
    refused = run.locator("table.errors tbody tr")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("notes.png")
    expect(refused).to_contain_text("not_an_image")
    shoot(page, "ingest")
    assert stack.client.get("/v1/collections/ui_ingest").json()["count"] == 6


def test_a_new_collection_is_made_with_the_model_picked(page: Page, stack: RunningStack) -> None:
    from tests.support.open_clip_models import SIGLIP

    page.goto("/#/ingest")
    page.get_by_label("Collection").fill("ui_siglip")
    page.get_by_label("Model (of a new one)").select_option(SIGLIP)
    drop_files(page, ".drop", looks(2, start=300))
    expect(page.locator(".run").first).to_have_attribute("data-state", "completed")
    info = stack.client.get("/v1/collections/ui_siglip").json()
    assert info["model"] == SIGLIP and info["count"] == 2
    # an existing collection keeps its model: the picker shows it, and is off
    page.get_by_label("Collection").fill("ui_siglip")
    expect(page.get_by_label("Model (of a new one)")).to_be_disabled()
    expect(page.locator("#ingest-model-help")).to_contain_text("re-index it")
    page.goto("/#/library")
    expect(page.locator(".card", has_text="ui_siglip")).to_contain_text("tiny-SigLIP2/test, 64-d")


def test_search_by_text_and_by_dropped_image(page: Page, catalogue: list[str]) -> None:
    search_text(page, "a red square on blue", 8)
    assert_every_control_is_labelled(page)
    found = scores(page)
    assert found == sorted(found, reverse=True)
    expect(page.locator(".results .tile img").first).to_have_js_property("complete", True)
    shoot(page, "search")
    shoot_phone(page, "search-phone")

    [(name, data)] = looks(1, start=3)
    drop_files(page, ".drop", [(name, data)])
    expect(page.locator("#results-title")).to_contain_text(f"images like {name}")
    first = page.locator(".results .tile").first
    expect(first.locator(".name")).to_have_text(name)  # an image finds itself first
    assert scores(page)[0] == pytest.approx(1.0, abs=1e-3)
    expect(page.locator(".results .tile")).to_have_count(8)


def test_search_by_keyword_finds_a_filename(page: Page, catalogue: list[str]) -> None:
    page.goto("/#/search")
    page.get_by_label("Collection").select_option(CATALOGUE)
    page.get_by_label("Describe what you are looking for").fill("look_37.png")
    page.get_by_label("Match").select_option("keyword")
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator(".results .tile").first
    expect(first.locator(".name")).to_have_text("look_37.png")
    expect(first).to_contain_text("keyword")
    # hybrid: every name holds "look" and "png", so only a term one name holds is sure to
    # lift it past the vector search's own (random-weight) ranking
    page.get_by_label("Describe what you are looking for").fill("37")
    page.get_by_label("Match").select_option("hybrid")
    page.get_by_role("button", name="Search", exact=True).click()
    # the keyword answer also starts with look_37.png: wait for this search's own answer
    expect(page.locator("#results-title")).to_contain_text("“37”")
    expect(page.locator(".results .tile").first.locator(".name")).to_have_text("look_37.png")
    expect(page.locator(".results .tile").first).to_contain_text("keyword")
    shoot(page, "search-keyword")


def test_a_quick_second_search_ends_with_its_own_tiles_all_loaded(
    page: Page, catalogue: list[str]
) -> None:
    """The blank tiles once seen in the keyword screenshot: a second search sent as soon as
    the first one's tiles appear. Its first tile is the same as the first search's, so
    every check made on the page passed while the first answer was still shown, and the
    screenshot caught the second answer's tiles as they replaced it, images still loading.
    Slowed requests hold that moment open; the page must say it is still busy until the
    answer it shows is the last search's, and then every thumbnail must load."""
    page.goto("/#/search")
    page.get_by_label("Collection").select_option(CATALOGUE)
    text = page.get_by_label("Describe what you are looking for")
    with slow_network(page, 400):
        for n in (31, 32, 33):
            text.fill(f"look_{n}.png")
            page.get_by_label("Match").select_option("keyword")
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator(".results .tile").first.locator(".name")).to_have_text(
                f"look_{n}.png"
            )
            text.fill(str(n))
            page.get_by_label("Match").select_option("hybrid")
            page.get_by_role("button", name="Search", exact=True).click()
            settle(page)
            expect(page.locator("#results-title")).to_contain_text(f"“{n}”", timeout=1)
            tiles = tile_images(page, ".results")
            assert len(tiles) == 10
            unloaded = [t for t in tiles if not t["complete"] or t["broken"] or not t["width"]]
            assert not unloaded, unloaded
    shoot(page, "search-twice")


def test_open_a_hit_then_find_similar(page: Page, catalogue: list[str]) -> None:
    search_text(page, "green", 5)
    name = page.locator(".results .tile .name").nth(2).inner_text()
    page.locator(".results .tile .thumb").nth(2).click()
    dialog = page.locator("#asset-dialog")
    expect(dialog.get_by_role("heading", level=2)).to_have_text(name)
    expect(dialog).to_contain_text("320 × 240 px")
    expect(dialog.locator("img.preview")).to_have_js_property("complete", True)
    shoot(page, "record", full_page=False)
    dialog.get_by_role("button", name="Find similar").click()
    expect(page).to_have_url(re.compile(r"#/search\?collection=ui_catalogue&like=[0-9a-f]{64}$"))
    expect(page.locator("#results-title")).to_contain_text(f"similar to {name}")
    expect(page.locator(".results .tile").first.locator(".name")).to_have_text(name)
    assert scores(page)[0] == pytest.approx(1.0, abs=1e-3)


def test_generate_from_picked_hits(page: Page, catalogue: list[str], fake_gemini: Any) -> None:
    search_text(page, "a poster", 4)
    picked = page.locator(".results .tile .name").all_inner_texts()[:2]
    for n in range(2):
        page.locator(".results .tile").nth(n).get_by_role("checkbox").check()
    page.get_by_role("link", name="Generate with them").click()
    picked_source = page.locator(".sources > .source")
    expect(picked_source).to_have_count(1)
    expect(picked_source).to_have_attribute("data-kind", "assets")
    expect(picked_source.locator(".chip")).to_have_count(2)
    assert_every_control_is_labelled(page)
    prompt = "ui test: the two looks on a magazine cover"
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Images").select_option("2")
    page.get_by_label("16:9", exact=True).check()
    page.get_by_label("Save the outputs to the collection").check()
    page.get_by_role("button", name="Generate").click()
    outputs = page.locator(".results > .result").first.locator(".outputs .output-tile")
    expect(outputs).to_have_count(2)
    expect(outputs.locator("figure img")).to_have_count(2)
    expect(outputs.get_by_text(f"Saved to {CATALOGUE}")).to_have_count(2)
    expect(page.locator(".result .usage")).to_have_text(
        "Gemini: 2 call(s), 2 image(s) returned, 2 billed, about $0.134"
    )
    references = page.locator(".result .used-sources").first.locator(".chip .name")
    assert sorted(references.all_inner_texts()) == sorted(picked)
    requests = fake_gemini.requests_for(prompt)
    assert len(requests) == 2
    assert {(r.reference_count, r.image_config["aspectRatio"]) for r in requests} == {(2, "16:9")}
    shoot(page, "generate")

    outputs.first.get_by_role("button", name="Open record").click()
    dialog = page.locator("#asset-dialog")
    expect(dialog.locator(".lineage")).to_contain_text(prompt)
    expect(dialog.locator(".lineage .chip")).to_have_count(2)
    shoot(page, "record-lineage", full_page=False)
    dialog.get_by_role("button", name="Close").click()

    # an output not saved at run time is saved afterwards, with the same lineage
    page.get_by_role("button", name="Remove source 1").click()
    page.get_by_label("16:9", exact=True).uncheck()
    page.get_by_label("Images").select_option("1")
    page.get_by_label("Save the outputs to the collection").uncheck()
    page.get_by_role("button", name="Generate").click()
    expect(outputs).to_have_count(1)
    outputs.get_by_role("button", name="Save to collection").click()
    expect(outputs.get_by_text(f"Saved to {CATALOGUE}")).to_have_count(1)


def test_library_pages_through_a_collection(page: Page, catalogue: list[str]) -> None:
    page.goto(f"/#/library?collection={CATALOGUE}")
    card = page.locator(".collections .card[aria-current]")
    expect(card).to_contain_text(CATALOGUE)
    count = int(re.search(r"(\d+) assets", card.inner_text()).group(1))  # type: ignore[union-attr]
    assert count >= CATALOGUE_SIZE  # saved generations may have joined it
    grid = page.locator(".assets .tile")
    expect(grid).to_have_count(50)
    expect(page.locator("#assets-title")).to_contain_text(f"assets 1–50 of {count}")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    shoot(page, "library")
    first_page = grid.locator(".name").all_inner_texts()
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#assets-title")).to_contain_text(f"assets 51–{count} of {count}")
    expect(grid).to_have_count(count - 50)
    assert not set(first_page) & set(grid.locator(".name").all_inner_texts())
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(grid.locator(".name").first).to_have_text(first_page[0])


def test_jobs_cancel_one_and_open_another(page: Page, stack: RunningStack) -> None:
    slow = stack.client.post(
        "/v1/jobs/generate", json={"prompt": "[slow:8] ui cancel me", "collection": CATALOGUE}
    ).json()
    failing = stack.client.post(
        "/v1/jobs/embed",
        params={"wait": 20},
        json={"collection": "ui_jobs", "items": [{"url": "http://127.0.0.1:9/nothing.png"}]},
    ).json()
    assert failing["state"] == "completed" and failing["errors"], failing
    page.goto("/#/jobs")
    assert_every_control_is_labelled(page)
    row = page.locator(f'tr[data-job-id="{slow["id"]}"]')
    expect(row).to_contain_text("generate")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert stack.client.get(f"/v1/jobs/{slow['id']}").json()["state"] == "cancelled"

    page.locator(f'tr[data-job-id="{failing["id"]}"]').get_by_role("button", name="Details").click()
    detail = page.locator(".job-detail")
    expect(detail.locator("table.errors tbody tr")).to_have_count(1)
    expect(detail).to_contain_text("forbidden_address")
    shoot(page, "jobs")
    shoot_phone(page, "jobs-phone")


@pytest.fixture
def keyed_page(browser: Browser, keyed_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    yield from open_page(browser, keyed_url, request)


def test_with_api_keys_on(keyed_page: Page, keyed_url: str) -> None:
    page = keyed_page
    page.goto("/#/ingest")
    key_dialog = page.locator("#key-dialog")
    expect(key_dialog).to_be_visible()
    page.get_by_label("Key", exact=True).fill("not-the-key")
    page.get_by_role("button", name="Use this key").click()
    expect(key_dialog).to_contain_text("That key was refused.")
    page.get_by_label("Key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(key_dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Forget API key")).to_be_visible()

    page.get_by_label("Collection").fill("ui_keyed")
    drop_files(page, ".drop", looks(3, start=200))
    expect(page.locator(".run").first).to_have_attribute("data-state", "completed")
    expect(page.locator(".run progress.embed")).to_have_js_property("value", 3)

    page.goto("/#/search")
    page.get_by_label("Describe what you are looking for").fill("anything")
    page.get_by_role("button", name="Search", exact=True).click()
    tiles = page.locator(".results .tile img")
    expect(tiles).to_have_count(3)
    # the thumbnails came with the key, through object URLs (never a key in a URL)
    for n in range(3):
        expect(tiles.nth(n)).to_have_attribute("src", re.compile(r"^blob:"))
        expect(tiles.nth(n)).to_have_js_property("complete", True)
        assert tiles.nth(n).evaluate("img => img.naturalWidth") > 0
    shoot(page, "keys-search")


def test_search_and_open_a_hit_from_the_keyboard(page: Page, catalogue: list[str]) -> None:
    page.goto("/#/search")
    page.get_by_label("Collection").select_option(CATALOGUE)
    page.get_by_label("Describe what you are looking for").focus()
    page.keyboard.type("blue")
    page.keyboard.press("Enter")
    expect(page.locator(".results .tile")).to_have_count(10)
    page.get_by_label("Results").focus()
    for _ in range(4):  # Search, the image picker, the first tile, its Reference box
        page.keyboard.press("Tab")
    focused = page.locator(":focus")
    expect(focused).to_have_attribute("type", "checkbox")
    page.keyboard.press("Shift+Tab")
    expect(focused).to_have_class("thumb")
    outline = focused.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid", "keyboard focus must be visible"
    shoot(page, "keyboard-focus", full_page=False)
    page.keyboard.press("Enter")
    dialog = page.locator("#asset-dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
