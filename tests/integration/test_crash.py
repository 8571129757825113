"""Crash safety: an embed worker SIGKILLed mid-job loses nothing and stores nothing twice."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.images import write_images
from tests.support.stack import RunningStack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def embed_hosts(stack: RunningStack) -> list[str]:
    return list(stack.client.get("/readyz").json()["queues"]["embed"])


def test_sigkill_an_embed_worker_mid_job(stack: RunningStack) -> None:
    folder = stack.library / "crash"
    write_images(folder, 240, start=5000)
    before = len(embed_hosts(stack))
    stack.stack.spawn("worker-embed-2", [*stack.stack.cli_argv(), "worker", "--queues", "embed"])
    wait_for(lambda: len(embed_hosts(stack)) > before, 60, "a second embed worker")

    job_id = stack.client.post(
        "/v1/jobs/embed", json={"collection": "crash", "directory": {"path": str(folder)}}
    ).json()["id"]
    wait_for(
        lambda: stack.client.get(f"/v1/jobs/{job_id}").json()["progress"]["succeeded"] >= 16,
        60,
        "the job to make progress",
    )
    victim = stack.stack.procs.pop("worker-embed")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    job = stack.wait_job(job_id, timeout_s=180)
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": 240, "succeeded": 240, "failed": 0}
    assert len(set(job["result"]["asset_ids"])) == 240
    assert stack.client.get("/v1/collections/crash").json()["count"] == 240
