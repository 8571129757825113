"""Small test helpers: distinct images made on the fly."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw


def make_image(seed: int, size: tuple[int, int] = (96, 80), fmt: str = "PNG") -> bytes:
    """A distinct image per seed: random background, random shapes."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(5, 60), y0 + rng.randrange(5, 60)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def write_images(folder: Path, count: int, start: int = 0, fmt: str = "PNG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = "jpg" if fmt == "JPEG" else fmt.lower()
    paths = []
    for seed in range(start, start + count):
        path = folder / f"img_{seed:05d}.{ext}"
        path.write_bytes(make_image(seed, fmt=fmt))
        paths.append(path)
    return paths


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size, followed by a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + png_chunk(b"IEND", b"")
    )
