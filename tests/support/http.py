"""Local HTTP peers for tests: one answering GETs (image URLs), one keeping POSTs (webhooks)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
