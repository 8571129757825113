"""Driving Debian's Chromium through Playwright as a person would: pages, screenshots at laptop
and phone width, dropped files, and the checks every page must pass."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.images import make_image
from tests.support.stack import OUTPUT

CHROMIUM = Path("/usr/bin/chromium")
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOTS = OUTPUT / "ui"
CATALOGUE = "ui_catalogue"
CATALOGUE_SIZE = 55  # more than one page of the library (the API's default page is 50)
API_KEY = "ui-test-key"
# Jobs run on real workers on a busy 2-core machine: give the page time to show their end.
expect.set_options(timeout=30_000)


def open_page(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh browser context; an uncaught script error fails the test, and a
    failed test leaves a screenshot of where the page was."""
    context = browser.new_context(viewport=LAPTOP, base_url=base_url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        report = getattr(request.node, "outcome", None)
        if report is not None and report.failed:
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SHOTS / f"FAILED-{request.node.name}.png", full_page=True)
    finally:
        context.close()
    assert not errors, errors


def looks(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [
        (f"look_{n:02d}.png", make_image(7000 + n, size=(320, 240)))
        for n in range(start, start + count)
    ]


def shoot(page: Page, name: str, full_page: bool = True) -> None:
    """A screenshot once every image on the page has loaded (or failed)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll("img")].every((img) =>
            img.complete && (img.naturalWidth > 0 || img.classList.contains("broken")))"""
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=full_page)


def shoot_phone(page: Page, name: str) -> None:
    """The same page at phone width, then back to the laptop."""
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(200)  # let the layout settle
    shoot(page, name)
    page.set_viewport_size(LAPTOP)


def drop_files(page: Page, selector: str, files: list[tuple[str, bytes]]) -> None:
    """Drag and drop files onto an element, as a person does from their file manager."""
    payload = [
        {"name": name, "data": base64.b64encode(data).decode(), "type": "image/png"}
        for name, data in files
    ]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def assert_every_control_is_labelled(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
            .filter((el) => !(el.labels?.length || el.getAttribute("aria-label")
                              || el.getAttribute("aria-labelledby")))
            .map((el) => el.outerHTML)"""
    )
    assert not unlabelled, unlabelled
