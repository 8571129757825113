"""A scale-down drains: SIGTERM (what Kubernetes sends a pod it removes) to a real embed
worker in the middle of a batch lets that batch finish and be acked, takes nothing new, and
exits 0; the batches still queued wait for the next worker; every image is fetched once and
stored once. And `assetrag worker-ready`, the pods' startup probe, passes against a real
worker once its model is loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cli.stack import Stack, free_port
from tests.support.http import serve_http
from tests.support.images import make_image
from tests.support.stack import OUTPUT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
DB = 11  # a Redis database of its own
IMAGES = 24
BATCH = 8


@pytest.fixture
def drained_stack(tmp_path: Path, redis_port: int, tiny_clip: Path) -> Iterator[Stack]:
    redis.Redis(port=redis_port, db=DB).flushdb()
    env = {
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/{DB}",
        "ASSETRAG_DATA_DIR": str(tmp_path / "data"),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_PRECISION": "fp32",
        "ASSETRAG_EMBED_BATCH_SIZE": str(BATCH),
        "ASSETRAG_READY_QUEUES": "embed,default",
        "ASSETRAG_ALLOW_PRIVATE_URLS": "true",  # the test's image server is on loopback
    }
    stack = Stack(
        port=free_port(), env=env, workers=("default", "embed"), log_dir=OUTPUT / "drain-logs"
    )
    with stack.running(ready_timeout_s=180):
        yield stack


def job_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
    return job


def worker_ready(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*stack.cli_argv(), "worker-ready"],
        env=stack.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sigterm_mid_batch_finishes_it_and_loses_nothing(drained_stack: Stack) -> None:
    stack = drained_stack
    probe = worker_ready(stack)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "embed-" in probe.stdout

    images = [make_image(7000 + i) for i in range(IMAGES)]
    fetched: Counter[str] = Counter()
    gate = threading.Event()

    def held(path: str) -> tuple[int, dict[str, str], bytes]:
        fetched[path] += 1
        gate.wait(120)  # every answer waits, so the batch is in hand when SIGTERM lands
        return 200, {"Content-Type": "image/png"}, images[int(path.rsplit("/", 1)[1])]

    broker = redis.Redis.from_url(stack.env["ASSETRAG_REDIS_URL"])
    with serve_http(held) as url, httpx.Client(base_url=stack.url, timeout=60) as client:
        items = [{"url": f"{url}/img/{i}"} for i in range(IMAGES)]
        response = client.post("/v1/jobs/embed", json={"collection": "drain", "items": items})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(lambda: fetched, 60, "the embed worker to start its first batch")

        victim = stack.procs.pop("worker-embed")
        os.kill(victim.pid, signal.SIGTERM)  # the process alone, as the kubelet signals PID 1
        with pytest.raises(subprocess.TimeoutExpired):
            victim.wait(timeout=2)  # draining: it holds its batch until the batch ends
        gate.set()
        assert victim.wait(timeout=90) == 0  # Celery's warm shutdown, a clean exit

        # The batch in hand was stored and acked; the other two wait, untouched, for the next
        # worker (nothing reserved was lost with the process).
        wait_for(lambda: job_of(client, job_id)["progress"]["succeeded"] == BATCH, 30, "a batch")
        assert job_of(client, job_id)["state"] == "running"
        assert broker.llen("embed") == IMAGES // BATCH - 1
        assert len(fetched) == BATCH

        stack.respawn("worker-embed")
        job = stack_job(client, job_id)

    assert job["state"] == "completed", job
    assert job["progress"] == {"total": IMAGES, "succeeded": IMAGES, "failed": 0}
    assert len(set(job["result"]["asset_ids"])) == IMAGES
    # each image fetched once: the drained batch was not run again by the next worker
    assert sorted(fetched.values()) == [1] * IMAGES
    assert client_count(stack) == IMAGES
    blobs = list((Path(stack.env["ASSETRAG_DATA_DIR"]) / "blobs" / "assets").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == IMAGES
    log = (OUTPUT / "drain-logs" / "worker-embed.log").read_text(errors="replace")
    assert "Warm shutdown" in log


def stack_job(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    def done() -> bool:
        return job_of(client, job_id)["state"] in ("completed", "failed", "cancelled")

    wait_for(done, timeout_s, "the job to finish", every_s=0.5)
    return job_of(client, job_id)


def client_count(stack: Stack) -> int:
    count: int = httpx.get(f"{stack.url}/v1/collections/drain", timeout=30).json()["count"]
    return count
