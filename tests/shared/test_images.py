from __future__ import annotations

import io
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

from shared.images import (
    ImageInfo,
    ImageRejected,
    decode_rgb,
    downscale,
    sniff_and_decode,
    sniff_image,
    thumbnail,
)
from tests.support.images import png_claiming

LIMIT = 64_000_000
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def photo(width: int = 64, height: int = 48) -> Image.Image:
    """A smooth gradient (compresses like a photo, so truncation hits pixel data)."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None].repeat(width, 1)
    noise = np.random.default_rng(0).integers(0, 40, (height, width))
    arr = np.stack([x, y, (x + y + noise) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def channel(img: Image.Image, xy: tuple[int, int], index: int = 0) -> int:
    pixel = img.getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[index])


def near(pixel: object, colour: tuple[int, ...], tol: int = 12) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))


def rejected(data: bytes, max_pixels: int = LIMIT) -> set[str]:
    """The refusal code from every entry point (they must agree)."""
    codes = set()
    for call in (
        lambda: sniff_image(data, max_pixels),
        lambda: decode_rgb(data, max_pixels),
        lambda: decode_rgb(data, max_pixels, draft_size=16),
        lambda: downscale(data, 32, max_pixels),
        lambda: sniff_and_decode(data, max_pixels, draft_size=16),
    ):
        with pytest.raises(ImageRejected) as info:
            call()
        assert str(info.value) == info.value.message and info.value.message
        codes.add(info.value.code)
    return codes


# --- refusals ----------------------------------------------------------------------------------


def test_zero_bytes_is_empty_file() -> None:
    assert rejected(b"") == {"empty_file"}


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a text file named photo.jpg\n" * 10,
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # Pillow could, but must not
        b"\x00" * 100,
    ],
)
def test_non_images_are_refused(data: bytes) -> None:
    assert rejected(data) == {"not_an_image"}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = encode(photo(256, 192), fmt)
    assert rejected(data[: len(data) // 2]) == {"corrupt_image"}


def test_truncated_stays_refused_when_someone_allowed_truncation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(photo(256, 192), "JPEG")
    assert rejected(data[: len(data) // 2]) == {"corrupt_image"}
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored, not changed for everyone


def test_png_with_bad_crc_is_corrupt() -> None:
    data = bytearray(encode(photo(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert rejected(bytes(data)) == {"corrupt_image"}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 20_000), (10_000, 10_000)])
def test_header_claiming_huge_size_is_a_bomb(size: tuple[int, int]) -> None:
    # Refused from the header: decoding 10^10 pixels would take minutes and 30 GB.
    assert rejected(png_claiming(*size)) == {"decompression_bomb"}


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_still_a_bomb() -> None:
    # 100M pixels: over Pillow's own warning threshold; under -W error it raises in open().
    assert rejected(png_claiming(10_000, 10_000), max_pixels=200_000_000) == {"decompression_bomb"}


def test_small_image_over_a_low_limit_is_a_bomb() -> None:
    data = encode(photo(64, 48), "PNG")
    assert rejected(data, max_pixels=64 * 48 - 1) == {"decompression_bomb"}
    assert sniff_image(data, max_pixels=64 * 48).width == 64


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mutated_files_never_leak_pillow_errors() -> None:
    rng = random.Random(7)
    sources = [encode(photo(), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]
    for _ in range(150):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(1, len(data))]
        try:
            decode_rgb(bytes(data), LIMIT)
        except ImageRejected as exc:
            assert exc.code in {"not_an_image", "corrupt_image", "decompression_bomb"}


# --- sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_reports_the_real_format(fmt: str, mime: str) -> None:
    info = sniff_image(encode(photo(40, 30), fmt), LIMIT)
    assert info == ImageInfo(format=fmt, mime_type=mime, width=40, height=30)


# --- decoding ----------------------------------------------------------------------------------


def exif_rotated_jpeg() -> bytes:
    """Stored 60x30, red top-left block on blue; orientation 6 = turn 90 degrees clockwise."""
    img = Image.new("RGB", (60, 30), BLUE)
    img.paste(RED, (0, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied() -> None:
    img = decode_rgb(exif_rotated_jpeg(), LIMIT)
    assert img.size == (30, 60)
    assert near(img.getpixel((27, 3)), RED)  # stored top-left lands top-right
    assert near(img.getpixel((2, 3)), BLUE)
    assert near(img.getpixel((27, 57)), BLUE)


def test_sniff_reports_the_upright_size() -> None:
    info = sniff_image(exif_rotated_jpeg(), LIMIT)
    assert (info.width, info.height) == (30, 60)


def test_sniff_and_decode_in_one_pass() -> None:
    info, img = sniff_and_decode(exif_rotated_jpeg(), LIMIT, draft_size=8)
    assert info == ImageInfo(format="JPEG", mime_type="image/jpeg", width=30, height=60)
    assert img.mode == "RGB" and img.size == (15, 30)  # drafted at 1/2, then rotated


def decoded_rgb(img: Image.Image, fmt: str = "PNG", **params: object) -> Image.Image:
    out = decode_rgb(encode(img, fmt, **params), LIMIT)
    assert out.mode == "RGB"
    return out


def test_grayscale() -> None:
    img = decoded_rgb(Image.new("L", (8, 8), 100))
    assert img.getpixel((0, 0)) == (100, 100, 100)


def test_one_bit() -> None:
    img = decoded_rgb(Image.new("1", (8, 8), 1))
    assert img.getpixel((0, 0)) == WHITE


def test_palette_with_transparency_is_composited_on_white() -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 1)
    img = decoded_rgb(pal, transparency=0)
    assert img.getpixel((0, 0)) == RED
    assert img.getpixel((5, 5)) == WHITE  # index 0 is transparent black


def test_rgba_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    img = decoded_rgb(rgba)
    assert img.getpixel((0, 0)) == RED
    assert img.getpixel((5, 5)) == WHITE
    assert near(img.getpixel((1, 0)), (127, 127, 127), tol=2)


def test_la_composited_on_white() -> None:
    la = Image.new("LA", (8, 8), (0, 0))
    la.putpixel((0, 0), (50, 255))
    img = decoded_rgb(la)
    assert img.getpixel((0, 0)) == (50, 50, 50)
    assert img.getpixel((5, 5)) == WHITE


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 257 * 64, 32896, 65535]], dtype=np.uint16)
    src = Image.fromarray(arr)
    assert src.mode.startswith("I;16")
    img = decoded_rgb(src)
    assert [channel(img, (x, 0)) for x in range(4)] == [0, 64, 128, 255]


def test_thirty_two_bit_integer_tiff() -> None:
    src = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32), mode="I")
    img = decoded_rgb(src, "TIFF")
    assert [channel(img, (x, 0)) for x in range(3)] == [0, 128, 255]


def test_float_tiff() -> None:
    src = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    img = decoded_rgb(src, "TIFF")
    assert [channel(img, (x, 0)) for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg() -> None:
    img = decoded_rgb(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)
    assert near(img.getpixel((8, 8)), (0, 255, 255))


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    img = decode_rgb(data, LIMIT)
    assert img.mode == "RGB" and img.getpixel((8, 8)) == RED


def test_webp_with_alpha() -> None:
    img = decoded_rgb(Image.new("RGBA", (16, 16), (0, 0, 255, 0)), "WEBP", lossless=True)
    assert img.getpixel((8, 8)) == WHITE


def test_draft_keeps_short_side_and_decodes_less() -> None:
    data = encode(photo(1600, 1200), "JPEG")
    full = decode_rgb(data, LIMIT)
    small = decode_rgb(data, LIMIT, draft_size=224)
    assert full.size == (1600, 1200)
    assert min(small.size) >= 224 and small.size[0] < 1600
    assert small.size[0] * 3 == small.size[1] * 4


def test_draft_is_ignored_for_png() -> None:
    assert decode_rgb(encode(photo(300, 200), "PNG"), LIMIT, draft_size=64).size == (300, 200)


# --- re-encoding -------------------------------------------------------------------------------


def test_downscale_keeps_aspect_and_max_side() -> None:
    data, mime = downscale(encode(photo(1500, 500), "PNG"), 512, LIMIT)
    img = Image.open(io.BytesIO(data))
    assert mime == "image/jpeg" and img.format == "JPEG"
    assert img.size == (512, 171)


def test_downscale_applies_exif_and_never_upscales() -> None:
    data, mime = downscale(exif_rotated_jpeg(), 1024, LIMIT)
    img = Image.open(io.BytesIO(data))
    assert mime == "image/jpeg" and img.size == (30, 60)
    assert near(img.convert("RGB").getpixel((27, 3)), RED, tol=20)


def test_downscale_keeps_alpha_as_png() -> None:
    rgba = Image.new("RGBA", (400, 200), (0, 0, 255, 0))
    data, mime = downscale(encode(rgba, "PNG"), 100, LIMIT)
    img = Image.open(io.BytesIO(data))
    assert mime == "image/png" and img.mode == "RGBA" and img.size == (100, 50)
    assert channel(img, (10, 10), 3) == 0


def test_downscale_refuses_like_decode() -> None:
    with pytest.raises(ImageRejected) as info:
        downscale(b"not an image", 512, LIMIT)
    assert info.value.code == "not_an_image"


def test_thumbnail_is_a_small_webp() -> None:
    img = Image.open(io.BytesIO(thumbnail(encode(photo(800, 400), "PNG"), 128)))
    assert img.format == "WEBP" and img.size == (128, 64)


def test_images_module_does_not_import_torch() -> None:
    code = "import sys, shared.images; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
