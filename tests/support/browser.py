"""Driving Debian's Chromium through Playwright as a person would: pages, screenshots at laptop
and phone width, dropped files, and the checks every page must pass."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
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


def settle(page: Page) -> None:
    """Waits until the page is done: nothing on it marked busy (a search or a job the page
    still waits for: `aria-busy`), then every image loaded (or failed) and decoded, so a
    screenshot shows what a person would see once the page stops changing. Checking the
    images alone is not enough: after a second search the first one's tiles, all loaded,
    are still on the page until the answer replaces them."""
    page.wait_for_function("""() => !document.querySelector('[aria-busy="true"]')""")
    page.wait_for_function(
        """() => [...document.querySelectorAll("img")].every((img) =>
            img.complete && (img.naturalWidth > 0 || img.classList.contains("broken")))"""
    )
    # decoding="async" lets a frame be painted before a loaded image is decoded
    page.evaluate(
        """() => Promise.all([...document.querySelectorAll("img")]
            .filter((img) => img.naturalWidth > 0).map((img) => img.decode().catch(() => null)))"""
    )


@contextmanager
def slow_network(page: Page, latency_ms: int) -> Iterator[None]:
    """Every request of the page answered `latency_ms` later (Chromium's own throttling), so
    that what a page shows while it waits stays on screen long enough to be seen."""
    cdp = page.context.new_cdp_session(page)
    conditions = {"offline": False, "downloadThroughput": -1, "uploadThroughput": -1}
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {**conditions, "latency": latency_ms})
    try:
        yield
    finally:
        cdp.send("Network.emulateNetworkConditions", {**conditions, "latency": 0})
        cdp.detach()


def tile_images(page: Page, selector: str) -> list[dict[str, object]]:
    """Each tile image under `selector`: its name, whether it loaded, its width, if broken."""
    return page.locator(f"{selector} .tile").evaluate_all(
        """(tiles) => tiles.map((tile) => {
            const img = tile.querySelector("img");
            return { name: tile.querySelector(".name")?.textContent, complete: img.complete,
                     width: img.naturalWidth, broken: img.classList.contains("broken") };
        })"""
    )


def shoot(page: Page, name: str, full_page: bool = True) -> None:
    """A screenshot once the page has settled (see `settle`)."""
    settle(page)
    if full_page:  # else the sticky header is drawn where the page was scrolled to
        page.evaluate("window.scrollTo(0, 0)")
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
