"""Compose in a real browser against the running stack: a dropped photo as the subject, two
searches with ticked hits, the sources in order with their roles, a run in two formats, the
outputs with their ratio and lineage, and "Edit this" sending the output as the base image
(checked on what the Gemini-protocol fake received)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from shared.images import downscale
from shared.settings import Settings
from tests.support.browser import (
    CATALOGUE,
    assert_every_control_is_labelled,
    drop_files,
    shoot,
    shoot_phone,
)
from tests.support.images import make_image
from tests.support.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]


def sent(data: bytes) -> str:
    """The digest of an image as sent to Gemini: references are downscaled (re-encoded) first,
    with the stack's settings (the defaults)."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    small, _ = downscale(data, settings.reference_max_side, settings.max_image_pixels)
    return hashlib.sha256(small).hexdigest()


def add_search(page: Page, text: str, tick: int) -> Locator:
    page.get_by_role("button", name="Add a search").click()
    source = page.locator(".sources > .source").last
    source.get_by_label("Search for").fill(text)
    source.get_by_label("In", exact=True).select_option(CATALOGUE)
    source.get_by_role("button", name="Find hits").click()
    hits = source.locator(".hits .tile")
    expect(hits).to_have_count(3)  # the reference top_k's default, from /v1/meta
    for n in range(tick):
        hits.nth(n).get_by_role("checkbox").check()
    expect(source).to_contain_text(f"{tick} ticked hit(s) will be used")
    return source


def test_compose_a_subject_photo_with_two_searches_then_edit_an_output(
    page: Page, stack: RunningStack, catalogue: list[str], fake_gemini: Any
) -> None:
    page.goto("/#/generate")
    prompt = "ui compose: the player wearing these on a beach"
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Collection", exact=True).fill(CATALOGUE)

    photo = make_image(9100, size=(300, 400))
    drop_files(page, ".compose .drop", [("player.png", photo)])
    sources = page.locator(".sources > .source")
    expect(sources).to_have_count(1)
    expect(sources.first).to_have_attribute("data-kind", "upload")
    expect(sources.first).to_have_attribute("data-role", "subject")
    sources.first.get_by_label("Label").fill("the player")

    add_search(page, "a red look", tick=2)
    third = add_search(page, "something blue", tick=1)
    third.get_by_label("Role").select_option("style")
    assert_every_control_is_labelled(page)

    expect(sources).to_have_count(3)
    expect(sources.locator("h3")).to_have_text(["1. Photo", "2. Search", "3. Search"])
    roles = [sources.nth(n).get_attribute("data-role") for n in range(3)]
    assert roles == ["subject", "item", "style"]
    expect(sources.nth(1).get_by_label("Label")).to_have_value("a red look")

    # a refusal from the API is shown as it came: two ticked hits cannot be the one base
    sources.nth(1).get_by_label("Role").select_option("base")
    page.get_by_role("button", name="Generate", exact=True).click()
    refusal = page.locator(".generate-form + .status.error")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("base")
    sources.nth(1).get_by_label("Role").select_option("item")

    page.get_by_label("1:1", exact=True).check()
    page.get_by_label("9:16", exact=True).check()
    page.get_by_label("Save the outputs to the collection").check()
    page.get_by_role("button", name="Generate", exact=True).click()

    result = page.locator(".results > .result").first
    outputs = result.locator(".output-tile")
    expect(outputs).to_have_count(2)
    expect(outputs.locator(".ratio")).to_have_text(["1:1", "9:16"])
    used = result.locator(".used-sources").first.locator(":scope > .used")
    expect(used).to_have_count(3)
    assert [used.nth(n).get_attribute("data-role") for n in range(3)] == [
        "subject",
        "item",
        "style",
    ]
    expect(used.first).to_contain_text("the player")
    expect(used.nth(1)).to_contain_text("assets · “a red look”")  # the ticked hits
    expect(used.nth(1).locator(".chip")).to_have_count(2)

    # what Gemini got: the photo first, then the two ticked hits, then the style hit
    first_call = fake_gemini.requests_for(prompt)[0]
    images = [p for p in first_call.parts if p.startswith("image:")]
    assert len(images) == 4, first_call.parts
    assert images[0] == "image:" + sent(photo)

    lineage = outputs.first.locator("details.lineage")
    expect(lineage).to_contain_text("1 step(s)")
    lineage.locator("summary").click()
    expect(lineage).to_contain_text(prompt)
    expect(lineage.locator(".used")).to_have_count(3)
    shoot(page, "compose")
    shoot_phone(page, "compose-phone")

    src = outputs.first.locator("figure img").get_attribute("src")
    assert src
    output_sha = sent(stack.client.get(src).content)
    outputs.first.get_by_role("button", name="Edit this").click()
    instruction = "ui compose edit: now make the shawl blue"
    outputs.first.get_by_label("Edit instruction").fill(instruction)
    outputs.first.get_by_role("button", name="Run edit").click()
    edited = page.locator(".results > .result").first
    expect(edited.locator("h2")).to_contain_text("Edit of output 1")
    expect(edited.locator(".output-tile")).to_have_count(1)
    expect(edited.locator(".used-sources").first.locator(":scope > .used")).to_have_attribute(
        "data-role", "base"
    )
    [edit_call] = fake_gemini.requests_for(instruction)
    assert edit_call.reference_sha256[0] == output_sha
    # the edit's lineage chains back through the composed image
    edit_lineage = edited.locator("details.lineage")
    expect(edit_lineage).to_contain_text("2 step(s)")
    shoot(page, "compose-edit")
