"""No webhook lost: the API and the default worker (the webhook deliverer) SIGKILLed while
webhooks are pending. Once both are back, every job's webhook arrives, each retry under the
same `webhook-id` (Standard Webhooks), signed."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from shared import webhooks
from tests.support.http import receive_posts
from tests.support.images import make_image
from tests.support.stack import WEBHOOK_SECRET, RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
JOBS = 6


def kill(stack: RunningStack, name: str) -> None:
    victim = stack.stack.procs.pop(name)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()


def test_webhooks_survive_the_api_and_the_deliverer_dying(stack: RunningStack) -> None:
    stack.ingest("hooked", [("hooked.png", make_image(8400))])
    # the receiver refuses every first attempt: each webhook is pending (due again later)
    with receive_posts(lambda n: 500 if n <= JOBS else 204) as (url, received):
        ids = []
        for n in range(JOBS):
            response = stack.client.post(
                "/v1/jobs/search",
                params={"wait": 20},
                json={
                    "collection": "hooked",
                    "queries": [{"text": f"hooked {n}"}],
                    "webhook": f"{url}/hook",
                },
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        deadline = time.monotonic() + 30
        while len(received) < JOBS:
            assert time.monotonic() < deadline, "the first attempts never came"
            time.sleep(0.05)
        kill(stack, "worker-default")
        kill(stack, "api")
        stack.stack.respawn("worker-default")
        stack.stack.respawn("api")
        stack.stack.wait_ready(120)

        want = {webhooks.message_id(job_id) for job_id in ids}
        deadline = time.monotonic() + 60
        while {p.headers["webhook-id"] for p in received[JOBS:]} < want:
            assert time.monotonic() < deadline, Counter(p.headers["webhook-id"] for p in received)
            time.sleep(0.2)
    attempts = Counter(p.headers["webhook-id"] for p in received)
    assert set(attempts) == want and all(attempts[msg] >= 2 for msg in want), attempts
    assert all(webhooks.verify(WEBHOOK_SECRET, p.headers, p.body) for p in received)
