"""The `assetrag` command against the real stack, and `assetrag up` started and stopped whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from cli.stack import free_port
from tests.support.images import write_images
from tests.support.stack import ROOT, RunningStack, assetrag

pytestmark = pytest.mark.integration


def test_ingest_search_sheet_generate_and_jobs(stack: RunningStack, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    write_images(folder, 25, start=9000, fmt="JPEG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    ingest = assetrag(stack, "ingest", str(folder), "--collection", "clidemo", "--wait")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "25" in ingest.stdout

    sheet = tmp_path / "sheet.png"
    found = assetrag(
        stack,
        "search",
        "a red shawl",
        "--collection",
        "clidemo",
        "--top-k",
        "6",
        "--sheet",
        str(sheet),
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert "img_09" in found.stdout
    with Image.open(sheet) as image:
        assert image.width > 300 and image.height > 200

    hits = assetrag(
        stack,
        "search",
        "--image",
        str(folder / "img_09003.jpg"),
        "--collection",
        "clidemo",
        "--json",
    )
    assert hits.returncode == 0, hits.stderr
    assert json.loads(hits.stdout)[0]["filename"] == "img_09003.jpg"

    out = tmp_path / "gen.png"
    made = assetrag(
        stack,
        "generate",
        "a poster",
        "--collection",
        "clidemo",
        "--query",
        "red",
        "--count",
        "2",
        "-o",
        str(out),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert (tmp_path / "gen-1.png").exists() and (tmp_path / "gen-2.png").exists()

    blocked = assetrag(stack, "generate", "nope [block:prompt]", "--collection", "clidemo")
    assert blocked.returncode == 1 and "blocked" in blocked.stdout + blocked.stderr

    listed = assetrag(stack, "jobs", "--limit", "5")
    assert listed.returncode == 0 and "generate" in listed.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_up_runs_the_stack_and_leaves_no_process_behind(
    tmp_path: Path, tiny_clip: Path, sig: signal.Signals
) -> None:
    """Ctrl-C stops every process cleanly; even a SIGKILLed `up` takes its children along."""
    port = free_port()
    env = {
        **os.environ,
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing there: up starts one
        "ASSETRAG_DATA_DIR": str(tmp_path / "data"),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_DEVICE": "cpu",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(proc, port)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 7  # redis, milvus, four workers, api
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert code == (0 if sig == signal.SIGINT else -signal.SIGKILL)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, alive
        assert (tmp_path / "data" / "redis").is_dir() and (tmp_path / "data" / "milvus").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.5)
    raise AssertionError("assetrag up never became ready")
