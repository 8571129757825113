"""Waiting for something a real process does, with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    """Returns once `predicate()` is true; fails the test after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")
