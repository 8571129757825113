"""Brand kits in a real browser against the running stack: a kit made from hits picked in
Search (with a palette), listed with its swatches; a new version saved from its page (both
versions shown); a generation with the kit whose output can never pass (an "off-brand" badge
with both scores and the attempts, checked on what the Gemini-protocol fake received); the
library audit as a grid sorted by similarity (checked on the order in the DOM); a delete."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import (
    CATALOGUE,
    LAPTOP,
    PHONE,
    assert_every_control_is_labelled,
    shoot,
    shoot_phone,
)
from tests.support.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
KIT = "ui-house"


def pick_hits(page: Page, text: str, count: int) -> list[str]:
    page.goto("/#/search")
    page.get_by_label("Collection").select_option(CATALOGUE)
    page.get_by_label("Describe what you are looking for").fill(text)
    page.get_by_label("Results").fill("6")
    page.get_by_role("button", name="Search", exact=True).click()
    tiles = page.locator(".results .tile")
    expect(tiles).to_have_count(6)
    for n in range(count):
        tiles.nth(n).get_by_role("checkbox").check()
    expect(page.locator(".picked")).to_contain_text(f"{count} picked as references")
    return [tiles.nth(n).locator(".name").inner_text() for n in range(count)]


def shoot_audit(page: Page, name: str) -> None:
    """The audit's head and first rows in view (the page holds a row for every asset)."""
    page.wait_for_timeout(200)  # let the layout settle
    page.evaluate(
        """() => window.scrollTo(0, document.querySelector(".audit h2").getBoundingClientRect().top
            + window.scrollY - document.querySelector(".bar").offsetHeight - 8)"""
    )
    shoot(page, name, full_page=False)


def similarities(page: Page) -> list[float]:
    return [float(t) for t in page.locator(".audit-grid tbody td.similarity").all_inner_texts()]


def test_make_a_kit_version_it_generate_off_brand_and_audit_the_library(
    page: Page, stack: RunningStack, catalogue: list[str], fake_gemini: Any
) -> None:
    # with nothing picked, the API's refusal is shown as it worded it
    page.goto("/#/kits")
    expect(page.get_by_role("heading", name="Brand kits")).to_be_visible()
    form = page.locator(".kit-form")
    form.get_by_label("Name").fill(KIT)
    form.get_by_role("button", name="Create kit").click()
    expect(form.locator(".status.error")).to_contain_text("references")

    picked = pick_hits(page, "a red look", 2)
    page.goto("/#/kits")
    form = page.locator(".kit-form")
    expect(form.locator(".kit-refs .chip")).to_have_count(2)
    expect(form.locator(".kit-refs")).to_contain_text(picked[0])
    form.get_by_label("Name").fill(KIT)
    form.get_by_label("Style").fill("soft morning light, linen textures")
    form.get_by_role("button", name="Add a colour").click()
    form.get_by_label("Colour 1", exact=True).fill("#C8102E")
    form.get_by_role("button", name="Add a colour").click()
    form.get_by_label("Colour 2", exact=True).fill("#FFFFFF")
    assert_every_control_is_labelled(page)
    form.get_by_role("button", name="Create kit").click()

    # its page, then the list with its swatches
    expect(page.locator("h1")).to_have_text(f"Kit {KIT}")
    expect(page.locator(".version")).to_have_count(1)
    page.get_by_role("link", name="← All kits").click()
    card = page.locator(f'.kit[data-kit="{KIT}"]')
    expect(card).to_contain_text("version 1 · 2 reference(s) in " + CATALOGUE)
    expect(card.locator(".swatch")).to_have_text(["#C8102E", "#FFFFFF"])
    first = card.locator(".chip-colour").first
    assert first.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(200, 16, 46)"
    shoot(page, "kits-list")

    # a new version: checks no output can pass, two attempts, another second colour
    card.get_by_role("link", name=KIT).click()
    page.get_by_role("button", name="New version").click()
    edit = page.locator(".kit-form")
    expect(edit.locator("h2")).to_have_text(f"New version of {KIT}")
    expect(edit.get_by_label("Colour 2", exact=True)).to_have_value("#FFFFFF")
    edit.get_by_label("Colour 2", exact=True).fill("#1D428A")
    edit.get_by_label("Min similarity").fill("1.5")
    edit.get_by_label("Attempts").fill("2")
    edit.get_by_role("button", name="Save as version 2").click()
    expect(page.locator(".page > .status")).to_have_text("Saved version 2.")
    versions = page.locator(".version")
    expect(versions).to_have_count(2)
    assert [versions.nth(n).get_attribute("data-version") for n in range(2)] == ["2", "1"]
    expect(versions.first.locator(".swatch")).to_have_text(["#C8102E", "#1D428A"])
    expect(versions.nth(1).locator(".swatch")).to_have_text(["#C8102E", "#FFFFFF"])
    expect(versions.first).to_contain_text("similarity ≥ 1.5 · 2 attempt(s)")
    for n in range(2):
        expect(versions.nth(n).locator(".kit-refs .chip img")).to_have_count(2)
    expect(versions.first.locator(".kit-refs")).to_contain_text(picked[1])
    shoot(page, "kits")
    shoot_phone(page, "kits-phone")

    # generate with the kit: a likeness above 1 is never reached, so both attempts are made
    page.goto("/#/generate")
    prompt = stack.tag("ui kits: a scarf on a chair")
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Collection", exact=True).fill(CATALOGUE)
    page.get_by_label("Brand kit").select_option(KIT)
    page.get_by_role("button", name="Generate", exact=True).click()
    badge = page.locator(".results .output-tile .brand-badge").first
    expect(badge).to_have_attribute("data-passed", "false")
    expect(badge.locator(".verdict")).to_have_text("off-brand")
    expect(badge.locator(".similarity")).to_have_text(re.compile(r"^similarity -?\d\.\d{3}$"))
    expect(badge.locator(".palette-distance")).to_have_text(re.compile(r"^palette \d+\.\d$"))
    expect(badge.locator(".attempts")).to_have_text("2 attempts")
    expect(badge.locator(".kit-ref")).to_have_text(f"{KIT}@2")
    assert len(fake_gemini.requests_for(prompt)) == 2
    shoot(page, "kits-generate")

    # the audit: every asset of the collection, sortable by similarity
    page.goto(f"/#/kits?kit={KIT}")
    page.get_by_role("button", name="Check the library").click()
    count = stack.client.get(f"/v1/collections/{CATALOGUE}").json()["count"]
    rows = page.locator(".audit-grid tbody tr")
    expect(rows).to_have_count(count)
    expect(page.locator(".audit .status")).to_contain_text(f"{count} checked against {KIT}@2")
    expect(rows.locator("td.passed")).to_have_text(["off-brand"] * count)  # 1.5 is never met
    page.get_by_role("button", name="Similarity").click()
    expect(page.locator('th[data-key="similarity"]')).to_have_attribute("aria-sort", "ascending")
    found = similarities(page)
    assert len(found) == count and found == sorted(found)
    page.get_by_role("button", name="Similarity").click()
    expect(page.locator('th[data-key="similarity"]')).to_have_attribute("aria-sort", "descending")
    found = similarities(page)
    assert found == sorted(found, reverse=True)
    assert found[0] > found[-1]
    shoot_audit(page, "kits-audit")
    page.set_viewport_size(PHONE)
    shoot_audit(page, "kits-audit-phone")
    page.set_viewport_size(LAPTOP)

    # delete: gone from the list, its versions still readable
    page.get_by_role("button", name="Delete kit").click()
    page.locator("dialog.confirm").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Brand kits")).to_be_visible()
    expect(page.locator(f'.kit[data-kit="{KIT}"]')).to_have_count(0)
    assert stack.client.get(f"/v1/kits/{KIT}@1").status_code == 200
