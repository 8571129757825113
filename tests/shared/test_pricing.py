"""The price table the service charges `usage` by is the one docs/generation.md prints."""

from __future__ import annotations

import re
from pathlib import Path

from shared.gemini.pricing import price_per_image

DOCS = Path(__file__).resolve().parents[2] / "docs" / "generation.md"


def test_the_docs_table_is_the_codes() -> None:
    rows = re.findall(
        r"^\| (512|1K|2K|4K)[^|]* \| \$([\d.]+) \| \$([\d.]+) \|$", DOCS.read_text(), re.M
    )
    assert [size for size, *_ in rows] == ["512", "1K", "2K", "4K"]
    for size, interactive, batch in rows:
        assert round(price_per_image("gemini-3.1-flash-image", size, False) or 0, 3) == float(
            interactive
        )
        assert round(price_per_image("gemini-3.1-flash-image", size, True) or 0, 3) == float(batch)


def test_variants_take_their_models_row_and_unknown_models_have_no_price() -> None:
    assert price_per_image("gemini-3.1-flash-image-preview", None, False) == price_per_image(
        "gemini-3.1-flash-image", "1K", False
    )
    assert price_per_image("imagen-9", "1K", False) is None
