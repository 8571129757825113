"""Contact sheets: grid geometry, thumbnails kept in aspect and centred, bad tiles survive."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from cli.sheet import PADDING, caption, contact_sheet, fit_text, thumbnail


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _cell_size(sheet: Image.Image, cols: int, rows: int) -> tuple[int, int]:
    assert sheet.width % cols == 0 and sheet.height % rows == 0
    return sheet.width // cols, sheet.height // rows


def test_grid_size_follows_columns_and_rows() -> None:
    red = _png((64, 64), (255, 0, 0))
    one_row = contact_sheet([(red, "a")] * 5, columns=5, tile=64)
    two_rows = contact_sheet([(red, "a")] * 7, columns=5, tile=64)
    assert one_row.mode == "RGB"
    assert one_row.width == two_rows.width == 5 * (64 + 2 * PADDING)
    assert two_rows.height == 2 * one_row.height
    cell_w, cell_h = _cell_size(two_rows, 5, 2)
    assert cell_h > 64 + 2 * PADDING  # room for the caption under the tile
    # fewer tiles than columns: the sheet narrows to what is there
    narrow = contact_sheet([(red, "a")] * 2, columns=5, tile=64)
    assert narrow.width == 2 * cell_w


def test_thumbnails_keep_aspect_and_are_centred_on_white() -> None:
    wide = _png((200, 100), (0, 0, 255))
    sheet = contact_sheet([(wide, caption(1, 0.91234, "wide.png"))], columns=3, tile=100)
    x0 = y0 = PADDING
    # 200x100 scaled into 100x100 -> 100x50, centred vertically: rows 25..74 blue
    assert sheet.getpixel((x0 + 50, y0 + 50)) == (0, 0, 255)
    assert sheet.getpixel((x0 + 50, y0 + 10)) == (255, 255, 255)
    assert sheet.getpixel((x0 + 50, y0 + 90)) == (255, 255, 255)
    # the caption is drawn under the tile: some dark pixels there
    band = sheet.crop((x0, y0 + 100, x0 + 100, sheet.height))
    lo, _hi = band.convert("L").getextrema()
    assert isinstance(lo, int) and lo < 128


def test_small_images_are_scaled_up_to_the_tile() -> None:
    thumb = thumbnail(_png((10, 20), (0, 255, 0)), 100)
    assert thumb is not None and thumb.size == (50, 100)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", _png((50, 50), (1, 2, 3))[:40]],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_tile_does_not_crash(data: bytes) -> None:
    good = _png((64, 64), (255, 0, 0))
    sheet = contact_sheet([(good, "ok"), (data, "bad")], columns=2, tile=64)
    cell_w, _ = _cell_size(sheet, 2, 1)
    # the bad tile is a grey square
    assert sheet.getpixel((cell_w + PADDING + 2, PADDING + 2)) == (200, 200, 200)
    assert sheet.getpixel((PADDING + 32, PADDING + 32)) == (255, 0, 0)


def test_transparent_png_is_flattened_on_white() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(buf, format="PNG")
    thumb = thumbnail(buf.getvalue(), 32)
    assert thumb is not None and thumb.getpixel((16, 16)) == (255, 255, 255)


def test_captions_are_formatted_and_truncated() -> None:
    assert caption(3, 0.87654, "x.jpg") == "#3  0.877\nx.jpg"
    assert caption(1, None, None) == "#1\n"
    from cli.sheet import _font

    font = _font()
    long = "a-very-long-file-name-that-cannot-fit-in-a-small-tile.png"
    cut = fit_text(long, font, 60)
    assert cut.endswith("…") and len(cut) < len(long)
    assert font.getlength(cut) <= 60
    assert fit_text("ok", font, 60) == "ok"


def test_empty_sheet_is_an_image() -> None:
    sheet = contact_sheet([], columns=5, tile=64)
    assert sheet.width > 0 and sheet.height > 0
