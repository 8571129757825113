"""How far an image's colours are from a palette: its dominant colours by pixel share, each to
the nearest palette colour in CIEDE2000 (scikit-image's, on CIELAB under D65), averaged by
share. 0 is on-palette; pure black to pure white is 100."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

# Dominant colours: a median-cut palette of this many colours over a small copy of the image
# (colour shares barely move below 128 px; the quantizer is then ~1 ms).
DOMINANT = 8
SAMPLE_SIDE = 128


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB triples (0–255, shape (n, 3)) as CIELAB."""
    return np.asarray(rgb2lab(rgb.reshape(1, -1, 3).astype(np.float64) / 255.0)).reshape(-1, 3)


def dominant_colours(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The image's dominant sRGB colours and their pixel shares (summing to 1)."""
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    image.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))
    quantized = image.quantize(colors=DOMINANT, method=Image.Quantize.MEDIANCUT)
    # (count, palette index) pairs: a "P" image's colours are indices into its palette
    counts: list[tuple[int, int]] = quantized.getcolors(DOMINANT) or []  # type: ignore[assignment]
    flat = quantized.getpalette() or []
    colours = np.array([flat[3 * i : 3 * i + 3] for _, i in counts], dtype=np.float64)
    shares = np.array([count for count, _ in counts], dtype=np.float64)
    return colours, shares / shares.sum()


def palette_distance(data: bytes, palette: list[str]) -> float:
    """The share-weighted mean CIEDE2000 from each dominant colour to its nearest palette
    colour."""
    colours, shares = dominant_colours(data)
    return lab_distance(to_lab(colours), shares, palette)


def lab_distance(colours: np.ndarray, shares: np.ndarray, palette: list[str]) -> float:
    targets = to_lab(np.array([hex_to_rgb(c) for c in palette], dtype=np.float64))
    pairs = deltaE_ciede2000(colours[:, None, :], targets[None, :, :])
    return float((pairs.min(axis=1) * shares).sum())
