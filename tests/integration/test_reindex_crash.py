"""Chaos through the real processes: the embed workers SIGKILLed in the middle of a re-index.

Searches answer from the version the alias names throughout, and once the watchdog has given
back the dead worker's batch the re-index ends one of two ways, never a third: finished (the
new version swapped in, whole) or, when the job was cancelled while its worker lay dead, gone
(the half-built version dropped). The killed workers are started again with their own
commands, so the stack keeps its worker set for the tests after."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.images import make_image
from tests.support.stack import RunningStack, embed, upload
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

COLLECTION = "rxcrash"
IMAGES = 160  # ten re-index batches of 16: seconds of work on the tiny models


@pytest.fixture(scope="module")
def asset_ids(stack: RunningStack) -> list[str]:
    """The collection both tests re-index, embedded once per stack."""
    blobs = [make_image(seed) for seed in range(9000, 9000 + IMAGES)]
    job = embed(stack, COLLECTION, [{"upload_id": u} for u in upload(stack, blobs, "rx")])
    assert job["state"] == "completed", job
    return list(job["result"]["asset_ids"])


def collection(stack: RunningStack) -> dict[str, Any]:
    return stack.client.get(f"/v1/collections/{COLLECTION}").json()


def versions(stack: RunningStack) -> list[tuple[int, bool]]:
    listed = stack.client.get(f"/v1/collections/{COLLECTION}/versions").json()["data"]
    return [(v["version"], v["current"]) for v in listed]


class Watch:
    """Searches for one image after another, and reads which version the collection answers
    from, in a thread, until stopped."""

    def __init__(self, stack: RunningStack, ids: list[str]) -> None:
        self.stack, self.ids = stack, ids
        self.answered: list[tuple[str, str]] = []  # (query, its top hit or the job's state)
        self.versions: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reindex-watch", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            asset_id = self.ids[n % len(self.ids)]
            body = {"collection": COLLECTION, "queries": [{"asset_id": asset_id}], "top_k": 1}
            answer = self.stack.client.post("/v1/jobs/search", json=body, params={"wait": 30})
            job = answer.json()
            if job.get("state") != "completed":
                job = self.stack.wait_job(job["id"], timeout_s=60)
            done = job["state"] == "completed"
            top = job["result"]["results"][0][0]["asset_id"] if done else job["state"]
            self.answered.append((asset_id, top))
            self.versions.append(collection(self.stack)["version"])
            n += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)


@contextlib.contextmanager
def watching(stack: RunningStack, ids: list[str]) -> Iterator[Watch]:
    watch = Watch(stack, ids)
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()


def embed_workers(stack: RunningStack) -> list[str]:
    """The stack's live embed workers, by name."""
    return [
        name
        for name, proc in stack.stack.procs.items()
        if proc.poll() is None and "embed" in stack.stack.commands[name]
    ]


def kill(stack: RunningStack, names: list[str]) -> None:
    for name in names:
        proc = stack.stack.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def progress(stack: RunningStack, job_id: str) -> dict[str, Any]:
    return stack.client.get(f"/v1/jobs/{job_id}").json()


@contextlib.contextmanager
def killed_mid_reindex(stack: RunningStack, model: str) -> Iterator[tuple[str, int]]:
    """A re-index started and the embed workers SIGKILLed once a batch is counted; yields
    the job and the version it builds while they lie dead, then starts them again with
    their own commands (the stack's worker set as it was)."""
    workers = embed_workers(stack)
    assert workers, stack.stack.procs
    response = stack.client.post(f"/v1/collections/{COLLECTION}/reindex", json={"model": model})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(lambda: progress(stack, job_id)["progress"]["succeeded"] >= 16, 60, "a batch counted")
    kill(stack, workers)
    try:
        job = progress(stack, job_id)
        assert job["state"] == "running", f"killed mid-way: {job}"
        yield job_id, job["result"]["version"]
    finally:
        for name in workers:
            stack.stack.respawn(name)


def other_model(stack: RunningStack, other_clip: Path) -> str:
    """The model the collection does not use now (the two test models take turns)."""
    current = collection(stack)["model"]
    return stack.stack.env["ASSETRAG_CLIP_MODEL"] if current == str(other_clip) else str(other_clip)


def test_a_reindex_whose_worker_was_killed_finishes_and_swaps_whole(
    stack: RunningStack, asset_ids: list[str], other_clip: Path
) -> None:
    before = collection(stack)
    model = other_model(stack, other_clip)
    with watching(stack, asset_ids) as watch:
        with killed_mid_reindex(stack, model) as (job_id, building):
            # the workers dead, the job running: the alias still names the old version
            assert collection(stack)["version"] == before["version"]
            assert (building, False) in versions(stack)
        job = stack.wait_job(job_id, timeout_s=90)
    assert job["state"] == "completed", job
    assert job["progress"] == {"total": IMAGES, "succeeded": IMAGES, "failed": 0}
    assert job["result"]["swapped"]
    after = collection(stack)
    assert (after["version"], after["model"], after["count"]) == (building, model, IMAGES)
    assert (building, True) in versions(stack)
    assert before["version"] in watch.versions, "searches ran while the re-index did"
    assert set(watch.versions) <= {before["version"], building}
    assert all(query == top for query, top in watch.answered), watch.answered


def test_a_reindex_cancelled_while_its_worker_lay_dead_drops_its_version(
    stack: RunningStack, asset_ids: list[str], other_clip: Path
) -> None:
    before = collection(stack)
    listed = versions(stack)
    with watching(stack, asset_ids) as watch:
        with killed_mid_reindex(stack, other_model(stack, other_clip)) as (job_id, building):
            cancel = stack.client.post(f"/v1/jobs/{job_id}/cancel")
            assert cancel.status_code in (200, 202), cancel.text
        # the dead worker's batch is given back by the watchdog and dropped: the job ends
        job = stack.wait_job(job_id, timeout_s=90)
        assert job["state"] == "cancelled", job
        wait_for(lambda: versions(stack) == listed, 30, f"version {building} dropped")
    assert collection(stack)["version"] == before["version"]
    assert set(watch.versions) == {before["version"]}
    assert watch.answered and all(query == top for query, top in watch.answered), watch.answered
