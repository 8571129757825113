"""`assetrag up` keeps running through faults, measured through real processes: a worker,
the Milvus Lite server and the private Redis (append-only file on) are each SIGKILLed in the
middle of an embed job; the supervisor restarts it and the job ends with every image stored
once and counted once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cli.stack import free_port
from tests.support.images import write_images
from tests.support.stack import ROOT

pytestmark = pytest.mark.integration


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    client: httpx.Client
    library: Path
    log: Path

    def child(self, *words: str) -> psutil.Process:
        """The live child process whose command line holds all these words."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if all(word in " ".join(child.cmdline()) for word in words):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"no child running {words}")

    def kill(self, *words: str) -> int:
        victim = self.child(*words)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        return victim.pid

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET that rides out the seconds Redis or Milvus take to come back."""
        deadline = time.monotonic() + 60
        while True:
            try:
                response = self.client.get(path, params=params)
                if response.status_code != 503:
                    return dict(response.json())
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{path} kept failing"
            time.sleep(0.5)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("assetrag up never became ready: " + self.log.read_text()[-3000:])

    def embed(self, collection: str, images: int, start: int) -> str:
        write_images(self.library / collection, images, start=start)
        body = {"collection": collection, "directory": {"path": str(self.library / collection)}}
        response = self.client.post("/v1/jobs/embed", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def progressed(self, job_id: str, at_least: int) -> None:
        deadline = time.monotonic() + 60
        while self.get(f"/v1/jobs/{job_id}")["progress"]["succeeded"] < at_least:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.2)

    def finished(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.get(f"/v1/jobs/{job_id}", wait=10)
            if job["state"] in ("completed", "failed", "cancelled"):
                return job
        raise AssertionError(f"job {job_id} still not finished: {self.get(f'/v1/jobs/{job_id}')}")


@pytest.fixture
def up(tmp_path: Path, tiny_clip: Path) -> Iterator[Up]:
    port = free_port()
    library = tmp_path / "library"
    library.mkdir()
    log = tmp_path / "up.log"
    env = {
        **os.environ,
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing there: up starts one
        "ASSETRAG_DATA_DIR": str(tmp_path / "data"),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_PRECISION": "fp32",
        "ASSETRAG_LIBRARY_ROOTS": str(library),
        "ASSETRAG_EMBED_BATCH_SIZE": "8",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    running = Up(proc, client, library, log)
    try:
        running.wait_ready()
        yield running
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        (ROOT / "test-output").mkdir(exist_ok=True)
        (ROOT / "test-output" / "up-faults.log").write_bytes(log.read_bytes())


def assert_stored_once(up: Up, job: dict[str, Any], collection: str, images: int) -> None:
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": images, "succeeded": images, "failed": 0}, job
    assert len(set(job["result"]["asset_ids"])) == images
    assert up.get(f"/v1/collections/{collection}")["count"] == images


def test_up_restarts_what_dies_and_every_job_ends(up: Up) -> None:
    # a worker killed mid-batch: restarted, its batch given back, every image stored once
    job_id = up.embed("killworker", 160, start=20_000)
    up.progressed(job_id, 16)
    old = up.kill("worker", "--queues embed")
    assert_stored_once(up, up.finished(job_id, 120), "killworker", 160)
    assert up.child("worker", "--queues embed").pid != old, "the supervisor restarted it"

    # the Milvus Lite server killed mid-job: batches retry, the job completes
    job_id = up.embed("killmilvus", 160, start=21_000)
    up.progressed(job_id, 16)
    up.kill("milvus-lite", "server")
    assert_stored_once(up, up.finished(job_id, 180), "killmilvus", 160)

    # the private Redis killed mid-job (append-only file, fsync every second): the job ends
    job_id = up.embed("killredis", 160, start=22_000)
    up.progressed(job_id, 16)
    up.kill("redis-server")
    job = up.finished(job_id, 240)
    assert job["state"] == "completed", job
    stored = up.get("/v1/collections/killredis")["count"]
    assert job["progress"]["succeeded"] == stored, "nothing reported stored is missing"
    assert job["progress"]["succeeded"] + job["progress"]["failed"] == job["progress"]["total"]
    up.wait_ready()
    output = up.log.read_text()
    for name in ("worker-embed", "milvus", "redis"):
        assert f"restarted {name}" in output, output[-3000:]


def test_a_worker_that_cannot_load_its_model_exits_saying_why(
    tmp_path: Path, redis_port: int
) -> None:
    env = {
        **os.environ,
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/5",
        "ASSETRAG_DATA_DIR": str(tmp_path / "data"),
        "ASSETRAG_CLIP_MODEL": str(tmp_path / "no-such-checkpoint.pt"),
        "ASSETRAG_DEVICE": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--queues", "query"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "cannot load the model" in done.stderr + done.stdout
    assert "no-such-checkpoint.pt" in done.stderr + done.stdout
