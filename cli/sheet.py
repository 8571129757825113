"""Contact sheets: a grid of thumbnails with a caption under each, for search hits."""

from __future__ import annotations

import io
import math
import warnings

from PIL import Image, ImageDraw, ImageFont, ImageOps

PADDING = 8
CAPTION_LINES = 2
FONT_SIZE = 14
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
UNREADABLE = (200, 200, 200)
UNREADABLE_TEXT = (90, 90, 90)

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int = FONT_SIZE) -> _Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def _text_width(font: _Font, text: str) -> float:
    return float(font.getlength(text))


def _line_height(font: _Font) -> int:
    left, top, right, bottom = font.getbbox("Agjy|")
    return int(bottom - top) + 4


def fit_text(text: str, font: _Font, width: int) -> str:
    """``text`` cut with an ellipsis so it fits in ``width`` pixels."""
    if _text_width(font, text) <= width:
        return text
    ellipsis = "…"
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if _text_width(font, text[:mid] + ellipsis) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ellipsis


def caption(rank: int, score: float | None, filename: str | None) -> str:
    """The standard two-line caption of a search hit: ``#rank  score`` then the filename."""
    score_text = "" if score is None else f"{score:.3f}"
    return f"#{rank}  {score_text}".rstrip() + "\n" + (filename or "")


def thumbnail(data: bytes, tile: int) -> Image.Image | None:
    """The image in ``data`` scaled to fit a ``tile`` square (aspect kept), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                opened.draft("RGB", (tile, tile))  # cheap JPEG downscale while decoding
                opened.load()
                img: Image.Image = ImageOps.exif_transpose(opened)
                if img.mode in ("RGBA", "LA", "PA") or (
                    img.mode == "P" and "transparency" in img.info
                ):
                    rgba = img.convert("RGBA")
                    flat = Image.new("RGB", rgba.size, BACKGROUND)
                    flat.paste(rgba, mask=rgba.getchannel("A"))
                    img = flat
                else:
                    img = img.convert("RGB")
                if img.width <= 0 or img.height <= 0:
                    return None
                return ImageOps.contain(img, (tile, tile), Image.Resampling.LANCZOS)
    except Exception:  # noqa: BLE001 - any undecodable input becomes an "unreadable" tile
        return None


def _unreadable(tile: int, font: _Font) -> Image.Image:
    img = Image.new("RGB", (tile, tile), UNREADABLE)
    draw = ImageDraw.Draw(img)
    label = "unreadable"
    width = _text_width(font, label)
    draw.text(
        ((tile - width) / 2, (tile - _line_height(font)) / 2),
        label,
        fill=UNREADABLE_TEXT,
        font=font,
    )
    return img


def contact_sheet(tiles: list[tuple[bytes, str]], columns: int = 5, tile: int = 224) -> Image.Image:
    """A white sheet with one cell per ``(image bytes, caption)``, ``columns`` cells a row.

    Each cell holds the image scaled into a ``tile`` square (aspect kept, centred) and its
    caption under it (up to two lines, each cut to the tile width). Bytes that do not decode
    give a grey "unreadable" tile.
    """
    if columns < 1:
        raise ValueError("columns must be >= 1")
    if tile < 16:
        raise ValueError("tile must be >= 16")
    font = _font()
    line_h = _line_height(font)
    caption_h = CAPTION_LINES * line_h + PADDING // 2
    cell_w = tile + 2 * PADDING
    cell_h = tile + caption_h + 2 * PADDING
    cols = max(1, min(columns, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    if not tiles:
        draw.text((PADDING, PADDING), "no results", fill=TEXT, font=font)
        return sheet

    for index, (data, text) in enumerate(tiles):
        row, col = divmod(index, cols)
        x0, y0 = col * cell_w + PADDING, row * cell_h + PADDING
        thumb = thumbnail(data, tile) if data else None
        if thumb is None:
            thumb = _unreadable(tile, font)
        sheet.paste(thumb, (x0 + (tile - thumb.width) // 2, y0 + (tile - thumb.height) // 2))
        lines = (text or "").splitlines()[:CAPTION_LINES]
        for n, line in enumerate(lines):
            draw.text(
                (x0, y0 + tile + PADDING // 2 + n * line_h),
                fit_text(line, font, tile),
                fill=TEXT,
                font=font,
            )
    return sheet
