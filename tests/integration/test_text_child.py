"""The query worker's text encoder child (ASSETRAG_QUERY_TEXT_PROCESS) in the real stack: it
answers text searches, and one killed is replaced without failing a search."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.images import make_image
from tests.support.processes import alive, spawned_children
from tests.support.stack import RunningStack, embed, upload
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def text_search(stack: RunningStack, text: str) -> list[dict[str, object]]:
    response = stack.client.post(
        "/v1/jobs/search",
        params={"wait": 30},
        json={"collection": "textchild", "queries": [{"text": text}], "top_k": 4},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "completed", job
    hits: list[dict[str, object]] = job["result"]["results"][0]
    return hits


def test_the_query_worker_has_a_child_only_where_it_is_turned_on(stack: RunningStack) -> None:
    children = spawned_children(stack.stack.procs["worker-query"].pid)
    assert len(children) == (1 if stack.stack.settings().query_text_process else 0)


def test_a_killed_text_encoder_child_is_replaced(stack: RunningStack) -> None:
    worker = stack.stack.procs["worker-query"].pid
    children = spawned_children(worker)
    if not children:
        pytest.skip("this stack's query worker encodes texts in process (the default)")
    assert stack.stack.log_dir is not None
    log = stack.stack.log_dir / "worker-query.log"
    assert f"texts are encoded in process {children[0]}" in log.read_text()
    assert (
        embed(
            stack,
            "textchild",
            [{"upload_id": u} for u in upload(stack, [make_image(300 + i) for i in range(6)])],
        )["state"]
        == "completed"
    )
    before = text_search(stack, "a lantern at dusk")
    assert len(before) == 4

    os.kill(children[0], signal.SIGKILL)
    wait_for(lambda: not alive(children[0]), 30, "the killed child to be gone")
    # a text the worker has not cached, so the search needs the encoder again
    after = text_search(stack, "a lantern at dawn")
    assert len(after) == 4
    replaced = spawned_children(worker)
    assert len(replaced) == 1 and replaced[0] != children[0]
    assert "the text encoder process died" in log.read_text()
