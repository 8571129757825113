"""What every benchmark shares: the machine it ran on (a figure means little without it), a
scratch folder for its data and logs, and a light HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = ", ".join(f for f in ("avx512_bf16", "amx_tile") if f in text) or "no avx512_bf16"
    except OSError:
        pass
    return (
        f"{cpu_name()} x {os.cpu_count()} CPUs ({flags}); "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


@contextmanager
def scratch(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for a run's data and logs; removed after, unless kept."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    finally:
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Load:
    """What a run of `http_load` saw."""

    wall_s: float = 0.0
    client_cpu: float = 0.0  # cores the load generator itself used
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # connections that broke

    def rate(self, status: int) -> float:
        return self.statuses.get(status, 0) / self.wall_s

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0


def http_load(
    port: int, path: str, body: Callable[[], bytes], clients: int, seconds: float
) -> Load:
    """`clients` keep-alive connections POST JSON to `path` for `seconds`.

    A minimal HTTP/1.1 client on raw asyncio streams (uvloop when there), so the load
    generator costs little CPU on a small machine; its CPU use is reported.
    """
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run  # type: ignore[assignment]
    seen = Load()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    run(_clients(port, path, body, clients, started + seconds, seen))
    seen.wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seen.client_cpu = cpu / seen.wall_s
    return seen


async def _clients(
    port: int, path: str, body: Callable[[], bytes], clients: int, until: float, seen: Load
) -> None:
    await asyncio.gather(*(_client(port, path, body, until, seen) for _ in range(clients)))


async def _client(
    port: int, path: str, body: Callable[[], bytes], until: float, seen: Load
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            payload = body()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + payload)
            answer = await reader.readuntil(b"\r\n\r\n")
            status = int(answer.split(b" ", 2)[1])
            length = 0
            for line in answer.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            seen.latencies_s.append(time.perf_counter() - started)
            seen.statuses[status] = seen.statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError):
        seen.failures += 1
    finally:
        writer.close()
