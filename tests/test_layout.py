"""The house stays readable: no product module longer than one sitting's read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500


def test_no_product_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("api", "workers", "shared", "cli")
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
