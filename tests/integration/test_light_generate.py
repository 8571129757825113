"""A generate worker runs no model: started where no CLIP model can be loaded, it runs a saved
generation whose references come from a query, and the saved images are searchable when the
job ends; torch is never loaded in its processes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support.images import make_image
from tests.support.stack import RunningStack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
NO_MODEL = "/nonexistent/no-such-clip-model.pt"


def generate_hosts(stack: RunningStack) -> list[str]:
    return list(stack.client.get("/readyz").json()["queues"].get("generate", []))


def torch_libraries(pid: int) -> list[str]:
    """The torch shared objects mapped into the process and its children."""
    found = []
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        found += [line.split()[-1] for line in maps.splitlines() if "libtorch" in line]
    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_generate_worker_without_a_model_saves_searchable_images(stack: RunningStack) -> None:
    running = stack.stack
    stop(running.procs.pop("worker-generate"))
    wait_for(lambda: not generate_hosts(stack), 60, "the stack's generate worker to leave")
    env = {**running.child_env(), "ASSETRAG_CLIP_MODEL": NO_MODEL, "ASSETRAG_CLIP_MODELS": ""}
    light = subprocess.Popen(
        [*running.cli_argv(), "worker", "--queues", "generate"],
        env=env,
        stdout=(running.log_dir / "worker-generate-light.log").open("ab")  # type: ignore[operator]
        if running.log_dir
        else None,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: generate_hosts(stack), 60, "the light generate worker")
        stack.ingest("light", [(f"light_{n}.png", make_image(8100 + n)) for n in range(3)])
        response = stack.client.post(
            "/v1/jobs/generate",
            json={
                "prompt": stack.tag("a poster of these"),
                "collection": "light",
                "references": {"query": "a light image", "top_k": 2},
                "save_to_collection": True,
            },
        )
        assert response.status_code in (200, 202), response.text
        job = stack.wait_job(response.json()["id"])
        assert job["state"] == "completed", job
        assert len(job["result"]["references"]) == 2
        saved = [image["asset_id"] for image in job["result"]["images"]]
        assert saved and all(saved)
        # searchable the moment the job ends: each saved image finds itself first
        for asset_id in saved:
            search = stack.client.post(
                "/v1/jobs/search",
                params={"wait": 30},
                json={"collection": "light", "queries": [{"asset_id": asset_id}], "top_k": 1},
            ).json()
            assert search["result"]["results"][0][0]["asset_id"] == asset_id
        assert stack.client.get("/v1/collections/light").json()["count"] == 3 + len(saved)
        assert light.poll() is None, "the light worker exited"
        assert torch_libraries(light.pid) == []
        # the check sees torch where it runs: the query worker encoded the reference query
        assert torch_libraries(running.procs["worker-query"].pid)
    finally:
        stop(light)
        running.respawn("worker-generate")
        wait_for(lambda: generate_hosts(stack), 60, "the stack's generate worker again")
