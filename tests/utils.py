"""Small test helpers: distinct images made on the fly."""

from __future__ import annotations

import http.server
import io
import random
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


# path -> (status, headers, body)
Responder = Callable[[str], tuple[int, dict[str, str], bytes]]


@contextmanager
def serve_http(respond: Responder) -> Iterator[str]:
    """A local HTTP server answering GETs with `respond(path)`; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = respond(self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@contextmanager
def receive_posts(
    status: Callable[[int], int] = lambda _n: 204,
) -> Iterator[tuple[str, list[Received]]]:
    """A local HTTP server keeping every POST it gets; `status(n)` answers the n-th (from 1).
    Yields its base URL and the list of what it received."""
    received: list[Received] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                code = status(len(received))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
