"""Chaos: Redis restarted (append-only file, fsync every second) in the middle of a generate
job, through real processes: the API, a generate worker and a default worker (Celery, each
its own process) on a redis-server of the test's own, and the real google-genai SDK against
the fake Gemini. The job completes with every item's result; what was answered before the
restart is not asked again, and nothing is asked more than twice.

The session stack's Redis keeps no files, so this test runs a small stack of its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.stack import Stack, Supervisor
from tests.support.fake_gemini import FakeGemini
from tests.support.redis_server import RestartableRedis
from tests.support.stack import OUTPUT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
QUICK = 4
SLOW = 4
SLOW_S = 4.0


@pytest.fixture
def small_stack(
    tmp_path: Path, tiny_clip: Path, fake_gemini: FakeGemini
) -> Iterator[tuple[httpx.Client, RestartableRedis, Stack]]:
    server = RestartableRedis(tmp_path / "redis").start()
    env = {
        "ASSETRAG_REDIS_URL": server.url(),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_GEMINI_API_KEY": "test-key",
        "ASSETRAG_GEMINI_BASE_URL": fake_gemini.base_url,
        "ASSETRAG_GEMINI_RPM": "0",
        # one item a task, so the job's progress moves item by item
        "ASSETRAG_GENERATE_BATCH_SIZE": "1",
    }
    stack = Stack.under(tmp_path, env, workers=("generate", "default"))
    stack.log_dir = OUTPUT / "stack-logs" / "redis-restart"
    try:
        with (
            stack.running(ready_timeout_s=None),
            httpx.Client(base_url=stack.url, timeout=30) as client,
        ):
            wait_for(lambda: serving(client, ("generate", "default")), 60, "the workers")
            yield client, server, stack
    finally:
        server.stop()


def serving(client: httpx.Client, queues: tuple[str, ...]) -> bool:
    """Whether a live, consuming worker serves each queue (/readyz is 503 here: no embed or
    query worker runs, and this test needs none)."""
    live = client.get("/readyz").json().get("queues", {})
    return all(live.get(q) for q in queues)


def test_redis_restarted_mid_generate_job(
    small_stack: tuple[httpx.Client, RestartableRedis, Stack], fake_gemini: FakeGemini
) -> None:
    client, redis_server, stack = small_stack
    tag = f"redis-restart-{uuid.uuid4().hex[:8]}"
    prompts = [f"quick {i} {tag}" for i in range(QUICK)]
    prompts += [f"slow {i} {tag} [slow:{SLOW_S}]" for i in range(SLOW)]
    response = client.post(
        "/v1/jobs/generate",
        json={"collection": "posters", "items": [{"prompt": p} for p in prompts]},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def progress() -> dict[str, int]:
        return dict(client.get(f"/v1/jobs/{job_id}").json()["progress"])

    # the quick items answered and recorded, the slow ones still at the fake Gemini
    wait_for(lambda: progress()["succeeded"] >= QUICK, 30, "the quick items")
    assert len(fake_gemini.requests_for(f" {tag} [slow")) == SLOW
    restarted_at = time.time()
    redis_server.restart()  # SIGTERM: Redis writes its append-only file, then exits

    deadline = time.monotonic() + 40
    while (job := client.get(f"/v1/jobs/{job_id}", params={"wait": 5}).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, job
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": QUICK + SLOW, "succeeded": QUICK + SLOW, "failed": 0}
    results = client.get(f"/v1/jobs/{job_id}/results").text
    lines = [json.loads(line) for line in results.splitlines()]
    assert [line["index"] for line in lines] == list(range(QUICK + SLOW))
    assert all(line["status"] == "succeeded" for line in lines), lines
    for line in lines:
        image = line["result"]["images"][0]
        assert client.get(image["content_url"]).content.startswith(b"\x89PNG")

    for prompt in prompts:
        sent = [r.received_at for r in fake_gemini.requests_for(prompt)]
        assert 1 <= len(sent) <= 2, (prompt, sent)
        if prompt.startswith("quick"):
            # answered before the restart: never sent again
            assert len(sent) == 1 and sent[0] < restarted_at, (prompt, sent)

    # And the stack serves again, as `assetrag up` runs it (its supervisor restarts a child
    # that exits). A worker holding unacknowledged tasks when the broker connection drops
    # exits once they finish (kombu 5.7 cannot hand them back while Redis is down and Celery
    # calls that unrecoverable); the messages stay in Redis's unacked set and come back
    # after the visibility timeout, to find their items recorded.
    restarted: list[str] = []
    supervisor = Supervisor(stack, restarted.append)

    def serves_again() -> bool:
        supervisor.check()
        return serving(client, ("generate", "default"))

    wait_for(serves_again, 40, "the workers back")
    after = client.post(
        "/v1/jobs/generate",
        json={"collection": "posters", "items": [{"prompt": f"after {i} {tag}"} for i in range(2)]},
    ).json()["id"]
    deadline = time.monotonic() + 30
    while (done := client.get(f"/v1/jobs/{after}", params={"wait": 2}).json())["state"] in (
        "queued",
        "running",
    ):
        supervisor.check()
        assert time.monotonic() < deadline, (done, restarted)
    assert done["state"] == "completed", done
