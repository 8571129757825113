"""Load: many clients searching with `wait` against `assetrag up` for a minute.

Starts `assetrag up` (its own Redis, the Milvus Lite server, one worker per queue, the API)
with a ViT-B/32-shaped random-weight checkpoint (`--tiny`: the test one), embeds a folder of
photo-like JPEGs, then N clients each send `POST /v1/jobs/search?wait=10` (one text query,
top_k 10, texts varied so the embedding cache does not answer them all) back to back for
the given time. It reports errors (any answer but 200, a broken connection), searches/s,
p50/p99 latency, and the resident memory of the API and each worker at the start and end
of the load, so a leak shows.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--images 500] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import describe, http_load, scratch  # noqa: E402
from cli.stack import Stack, free_port, scratch_env, wait_ready  # noqa: E402
from tests.support.clip_checkpoint import build_tiny_checkpoint, build_vit_b32_checkpoint  # noqa: E402
from tests.support.images import write_images  # noqa: E402

COLLECTION = "bench_load"
WORDS = [
    "red",
    "silk",
    "shawl",
    "gold",
    "trim",
    "leather",
    "boot",
    "castle",
    "dragon",
    "blue",
    "velvet",
    "armour",
    "studio",
]


def start_up(base: Path, checkpoint: Path, library: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`assetrag up` itself (its children are what the memory figures read), under `base`."""
    port = free_port()
    env = {
        **os.environ,
        **scratch_env(base),  # its data under base; nothing at the Redis URL: up starts one
        "ASSETRAG_CLIP_MODEL": str(checkpoint),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_LIBRARY_ROOTS": str(library),
    }
    log = (base / "up.log").open("wb")
    proc = subprocess.Popen(
        [*Stack.cli_argv(), "up", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", 300, lambda: [] if proc.poll() is None else ["up"])
    except RuntimeError as exc:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise RuntimeError(
            f"assetrag up never became ready: {exc}; see {base / 'up.log'}"
        ) from None
    return proc, port


def memory_mb(up: subprocess.Popen[bytes]) -> dict[str, float]:
    """Resident memory of the API and of each worker, by the queue it serves."""
    found: dict[str, float] = {}
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            rss = child.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        if " api " in f"{command} ":
            found["api"] = rss
        elif "--queues" in command:
            found["worker " + command.split("--queues", 1)[1].split()[0]] = rss
    return found


def ingest(port: int, library: Path) -> None:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    body = {"collection": COLLECTION, "directory": {"path": str(library)}}
    job = client.post("/v1/jobs/embed", json=body).json()
    while job["state"] not in ("completed", "failed", "cancelled"):
        job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    if job["state"] != "completed":
        raise RuntimeError(f"ingest failed: {job}")


def query_body(rng: random.Random) -> bytes:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
    text += f" {rng.randint(0, 10**6)}"  # mostly distinct: the encoder works for each
    body = {"collection": COLLECTION, "queries": [{"text": text}], "top_k": 10}
    return json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--tiny", action="store_true", help="the small test checkpoint")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    with scratch("assetrag-load-", args.keep) as base:
        checkpoint = base / "clip.pt"
        (build_tiny_checkpoint if args.tiny else build_vit_b32_checkpoint)(checkpoint)
        write_images(base / "library", args.images, fmt="JPEG")
        up, port = start_up(base, checkpoint, base / "library")
        try:
            ingest(port, base / "library")
            rng = random.Random(7)
            path = "/v1/jobs/search?wait=10"
            http_load(port, path, lambda: query_body(rng), 4, 5.0)  # warm-up
            before = memory_mb(up)
            seen = http_load(port, path, lambda: query_body(rng), args.clients, args.seconds)
            after = memory_mb(up)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    errors = sum(n for status, n in seen.statuses.items() if status != 200) + seen.failures
    print(
        f"{args.clients} clients, {args.seconds:.0f} s, {args.images} images, "
        f"model {'tiny' if args.tiny else 'ViT-B/32 (random weights)'}"
    )
    print(f"searches: {sum(seen.statuses.values())} ({seen.rate(200):.1f}/s), errors: {errors}")
    print(f"statuses: {seen.statuses}; broken connections: {seen.failures}")
    print(f"latency p50 {seen.percentile_ms(0.5):.0f} ms, p99 {seen.percentile_ms(0.99):.0f} ms")
    print(f"load generator CPU: {seen.client_cpu:.0%} of a core")
    print("resident memory, MB (start -> end of the load):")
    for name in sorted(before):
        print(f"  {name:<16} {before[name]:7.1f} -> {after.get(name, float('nan')):7.1f}")


if __name__ == "__main__":
    main()
