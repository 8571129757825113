"""Image intake: sniff, refuse, decode to RGB, downscale. Pure Pillow and numpy (no torch).

Every refusal is an `ImageRejected` with a stable `code`; no Pillow exception escapes.
The size limit is checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from shared.contract import ErrorCode
from shared.errors import InputRejected

# Formats we accept; the rest (EPS runs Ghostscript, WMF, PSD, ...) is refused as not an image.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
_MIME_OVERRIDES = {"MPO": "image/jpeg"}  # phone JPEGs with extra pictures are still JPEG
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)
_ORIENTATION = 0x0112  # the EXIF tag; values 5 to 8 turn the picture a quarter
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
DEFAULT_MAX_PIXELS = 64_000_000


class ImageRejected(InputRejected):
    """Bytes that are not a usable image."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    width: int
    height: int


# --- strict truncation -------------------------------------------------------------------------

_strict_lock = threading.Lock()
_strict_depth = 0
_strict_saved = False


@contextmanager
def _strict_truncation() -> Iterator[None]:
    """Force Pillow to raise on truncated data while any of our decodes run, then restore."""
    global _strict_depth, _strict_saved
    with _strict_lock:
        if _strict_depth == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_depth += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


# --- opening -----------------------------------------------------------------------------------


def _bomb(pixels: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        ErrorCode.decompression_bomb,
        f"image has {pixels} pixels, more than the limit of {max_pixels}",
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the format and check the header's size; decodes no pixels."""
    if not data:
        raise ImageRejected(ErrorCode.empty_file, "the file is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(ErrorCode.decompression_bomb, f"image is too large: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected(ErrorCode.not_an_image, "the file is not a supported image") from None
    except Exception as exc:  # a plugin choked on a header it recognised
        raise ImageRejected(
            ErrorCode.corrupt_image, f"the image header is corrupt: {exc}"
        ) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageRejected(
            ErrorCode.corrupt_image, f"the image has an invalid size {width}x{height}"
        )
    if width * height > max_pixels:
        raise _bomb(width * height, max_pixels)
    return img


def _load(img: Image.Image) -> None:
    """Decode the current frame fully, mapping every failure to a refusal."""
    try:
        with _strict_truncation():
            img.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(ErrorCode.decompression_bomb, f"image is too large: {exc}") from None
    except Exception as exc:
        raise ImageRejected(
            ErrorCode.corrupt_image, f"the image is truncated or corrupt: {exc}"
        ) from None


def _verify(data: bytes, max_pixels: int) -> None:
    """Pillow's structural check (PNG chunk CRCs and the like) on its own image object."""
    img = _open(data, max_pixels)
    try:
        with _strict_truncation():
            img.verify()
    except Exception as exc:
        raise ImageRejected(
            ErrorCode.corrupt_image, f"the image is truncated or corrupt: {exc}"
        ) from None


def _info(img: Image.Image) -> ImageInfo:
    """The format, and the size as the image is shown: upright, after its EXIF orientation."""
    fmt = img.format or "unknown"
    mime = _MIME_OVERRIDES.get(fmt) or Image.MIME.get(fmt) or "application/octet-stream"
    width, height = img.size
    try:
        turned = img.getexif().get(_ORIENTATION) in _QUARTER_TURNS
    except Exception:  # a broken EXIF block: shown as stored
        turned = False
    if turned:
        width, height = height, width
    return ImageInfo(format=fmt, mime_type=mime, width=width, height=height)


def sniff_image(data: bytes, max_pixels: int) -> ImageInfo:
    """What the bytes really are, after a full decode; refuses anything unusable."""
    _verify(data, max_pixels)
    img = _open(data, max_pixels)
    _load(img)
    return _info(img)


# --- conversion to 8-bit -----------------------------------------------------------------------


def _scale_to_uint8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Scale to 0..255: by `full_scale` when given, else stretch min..max."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if full_scale is None:
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
    else:
        arr = arr / full_scale
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def _deep_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float single-channel images to 8-bit L, scaled not clipped."""
    arr = np.asarray(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        full: float | None = 65535.0
    elif img.mode == "I":
        in_16_bit = arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) <= 65535)
        full = 65535.0 if in_16_bit else None  # what 16-bit PNG/TIFF give; else stretch
    else:  # "F"
        finite = arr[np.isfinite(arr)]
        in_unit = finite.size == 0 or (float(finite.min()) >= 0 and float(finite.max()) <= 1)
        full = 1.0 if in_unit else None
    return Image.fromarray(_scale_to_uint8(arr, full), mode="L")


def _normalise(img: Image.Image, keep_alpha: bool) -> Image.Image:
    """Any mode to RGB (or RGBA when `keep_alpha` and the image has transparency)."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        img = _deep_to_l(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        if keep_alpha:
            return rgba
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _orient(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _decode(
    data: bytes, max_pixels: int, draft_size: int | None, keep_alpha: bool
) -> tuple[ImageInfo, Image.Image]:
    _verify(data, max_pixels)
    img = _open(data, max_pixels)
    info = _info(img)  # before draft mode shrinks it
    if draft_size and img.format in ("JPEG", "MPO"):
        # draft keeps both sides >= the request, so the short side stays >= draft_size
        img.draft("RGB", (draft_size, draft_size))
    _load(img)  # the first frame of an animation
    try:
        return info, _normalise(_orient(img), keep_alpha)
    except Exception as exc:
        raise ImageRejected(
            ErrorCode.corrupt_image, f"the image could not be converted: {exc}"
        ) from None


def decode_rgb(data: bytes, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decoded, EXIF-oriented, 8-bit RGB first frame; alpha is composited onto white."""
    return _decode(data, max_pixels, draft_size, keep_alpha=False)[1]


def sniff_and_decode(
    data: bytes, max_pixels: int, draft_size: int | None = None
) -> tuple[ImageInfo, Image.Image]:
    """`sniff_image` and `decode_rgb` in one decode (the embed path needs both)."""
    return _decode(data, max_pixels, draft_size, keep_alpha=False)


# --- re-encoding -------------------------------------------------------------------------------


def _encode(img: Image.Image) -> tuple[bytes, str]:
    out = io.BytesIO()
    if img.mode == "RGBA":
        img.save(out, format="PNG", optimize=False)
        return out.getvalue(), "image/png"
    img.save(out, format="JPEG", quality=90)
    return out.getvalue(), "image/jpeg"


def downscale(data: bytes, max_side: int, max_pixels: int) -> tuple[bytes, str]:
    """Longest side <= max_side, EXIF applied; JPEG (q90), or PNG when the source had alpha."""
    img = _decode(data, max_pixels, draft_size=max_side, keep_alpha=True)[1]
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _encode(img)


def thumbnail(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A WebP (quality 80) whose longest side is at most `size`, alpha composited onto white."""
    img = _decode(data, max_pixels, draft_size=size, keep_alpha=False)[1]
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=80, method=4)
    return out.getvalue()
