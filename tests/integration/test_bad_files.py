"""A corpus of awkward files through one embed job on the real stack: what is not a usable
image becomes that item's error with a clear code; everything else is stored, upright."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.images import make_image, png_claiming
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def corpus() -> dict[str, tuple[bytes, str | None]]:
    """file name → (bytes, the item error code, or None when it must be stored)."""
    photo = Image.open(io.BytesIO(make_image(31, size=(80, 60)))).convert("RGB")
    rotated = Image.Exif()
    rotated[0x0112] = 6  # shown turned a quarter clockwise: 60 wide, 80 high
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 0, 0), (0, 0, 200), (0, 200, 0))]
    sixteen = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
    jpeg = encode(photo, "JPEG", quality=90)
    return {
        "empty.jpg": (b"", "empty_file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt_image"),
        "not-really.png": (b"GIF89a? no, just words in a file", "not_an_image"),
        "huge.png": (png_claiming(60_000, 60_000), "decompression_bomb"),
        "cmyk.jpg": (encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"), None),
        "sixteen-bit.png": (encode(sixteen, "PNG"), None),
        "animated.gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), None),
        "animated.webp": (
            encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
            None,
        ),
        "misnamed.jpg": (encode(photo, "PNG"), None),  # a PNG called .jpg: sniffed, not trusted
        "rotated.jpg": (encode(photo, "JPEG", quality=90, exif=rotated.tobytes()), None),
    }


def test_a_bad_file_corpus_through_an_embed_job(stack: RunningStack) -> None:
    files = corpus()
    folder: Path = stack.library / "awkward"
    folder.mkdir()
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    body = {"collection": "awkward", "directory": {"path": str(folder)}}
    job = stack.wait_job(stack.client.post("/v1/jobs/embed", json=body).json()["id"])
    assert job["state"] == "completed", job
    names = sorted(files)
    codes = {Path(e["source"]).name: e["code"] for e in job["errors"]}
    assert codes == {name: code for name, (_, code) in files.items() if code is not None}
    stored = [name for name, (_, code) in files.items() if code is None]
    assert job["progress"] == {"total": len(files), "succeeded": len(stored), "failed": 4}
    assert stack.client.get("/v1/collections/awkward").json()["count"] == len(stored)

    by_name = dict(zip(names, job["result"]["asset_ids"], strict=True))
    rotated = stack.client.get(f"/v1/collections/awkward/assets/{by_name['rotated.jpg']}").json()
    assert (rotated["width"], rotated["height"]) == (60, 80), "recorded upright"
    thumb = stack.client.get(rotated["thumbnail_url"])
    with Image.open(io.BytesIO(thumb.content)) as shown:
        assert shown.width < shown.height, "shown upright"
    misnamed = stack.client.get(f"/v1/collections/awkward/assets/{by_name['misnamed.jpg']}")
    assert misnamed.json()["mime_type"] == "image/png"
    original = stack.client.get(misnamed.json()["content_url"])
    assert original.content == files["misnamed.jpg"][0], "originals are kept byte for byte"
