"""Browser tests: Playwright drives Debian's Chromium headless (never a downloaded browser)
against the session's running stack, as a person would use the web UI."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cli.stack import Stack, free_port
from tests.conftest import OUTPUT, RunningStack
from tests.utils import make_image

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for a module's tests, closed after them: Playwright's sync API runs its
    event loop in a greenlet of this thread, and while it runs no other test in the session
    could call asyncio.run()."""
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium (make test installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
    # the greenlet's loop leaves itself set as this thread's running loop
    asyncio.events._set_running_loop(None)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.outcome = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def page(browser: Browser, stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[Page]:
    yield from open_page(browser, stack.url, request)


@pytest.fixture(scope="session")
def keyed_url(stack: RunningStack) -> Iterator[str]:
    """A second API process with API keys on, sharing the stack's Redis, Milvus and workers."""
    port = free_port()
    env = {**stack.stack.env, "ASSETRAG_API_KEYS": f"{API_KEY}:uitenant"}
    keyed = Stack(port=port, env=env, workers=(), log_dir=OUTPUT / "stack-logs" / "keyed")
    keyed.start()
    try:
        keyed.wait_ready(60)
        yield f"http://127.0.0.1:{port}"
    finally:
        keyed.stop()


@pytest.fixture(scope="session")
def catalogue(stack: RunningStack) -> list[str]:
    """A collection made through the API, as a script would: look_00.png, look_01.png, …"""
    return stack.ingest(CATALOGUE, looks(CATALOGUE_SIZE))


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
