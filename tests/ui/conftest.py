"""Browser tests: Playwright drives Debian's Chromium headless (never a downloaded browser)
against the session's running stack, as a person would use the web UI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from cli.stack import Stack, free_port
from tests.support.browser import (
    API_KEY,
    CATALOGUE,
    CATALOGUE_SIZE,
    CHROMIUM,
    CHROMIUM_ARGS,
    looks,
    open_page,
)
from tests.support.stack import OUTPUT, RunningStack


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
