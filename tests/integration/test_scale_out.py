"""Scale out: two API replicas and every worker kind as separate processes that share nothing
but the Redis URL, the Milvus URI and an s3:// blob URI (each its own data directory, no
common local directory), against a real S3-protocol server.

One embed job (uploads and URLs) spread over two embed workers, one of them SIGKILLed
mid-job, stores every image exactly once; uploads go in through one API replica and the job
through the other; search and a saved generation run; the workers' metrics moved and their
JSON log lines carry the job id.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cli.stack import Stack, free_port
from tests.support.http import serve_http
from tests.support.images import make_image
from tests.support.stack import OUTPUT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
DB = 4  # a Redis database of its own (the shared stack uses 0, unit tests 1)
IMAGES = 96
BATCH = 8


@dataclass
class Fleet:
    apis: list[httpx.Client]
    workers: Stack
    servers: list[Stack]
    bucket: str
    s3: Any
    data_dirs: list[Path]
    metrics: dict[str, int]
    log_dir: Path


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    redis_port: int,
    s3_server: Any,
    tiny_clip: Path,
    fake_gemini: Any,
) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("scale-out")
    redis.Redis(port=redis_port, db=DB).flushdb()
    bucket = s3_server.new_bucket()
    shared = {
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/{DB}",
        "ASSETRAG_BLOB_URI": f"s3://{bucket}/blobs",
        **s3_server.env(),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_PRECISION": "fp32",
        "ASSETRAG_EMBED_BATCH_SIZE": str(BATCH),
        "ASSETRAG_GEMINI_API_KEY": "test-key",
        "ASSETRAG_GEMINI_BASE_URL": fake_gemini.base_url,
        "ASSETRAG_GEMINI_RPM": "0",
        "ASSETRAG_WATCHDOG_PERIOD_S": "2",
        "ASSETRAG_WORK_QUIET_S": "10",
        "ASSETRAG_LOG_FORMAT": "json",
        "ASSETRAG_ALLOW_PRIVATE_URLS": "true",  # the test's image server is on loopback
    }
    log_dir = OUTPUT / "scale-out-logs"
    # logs are appended to (a restarted process keeps its history): start from none, so
    # the checks below read this run's lines only
    shutil.rmtree(log_dir, ignore_errors=True)
    dirs = [base / "api-a", base / "api-b", base / "workers"]
    # API A runs the Milvus Lite server beside it (under its own data directory); everything
    # else reaches Milvus only through its URI.
    api_a = Stack(
        port=free_port(),
        env={**shared, "ASSETRAG_DATA_DIR": str(dirs[0])},
        workers=(),
        log_dir=log_dir / "api-a",
    )
    servers = [api_a]
    workers: Stack | None = None
    clients: list[httpx.Client] = []
    try:
        api_a.start()
        milvus = {"ASSETRAG_MILVUS_URI": api_a.env["ASSETRAG_MILVUS_URI"]}
        api_b = Stack(
            port=free_port(),
            env={**shared, **milvus, "ASSETRAG_DATA_DIR": str(dirs[1])},
            workers=(),
            log_dir=log_dir / "api-b",
        )
        servers.append(api_b)
        api_b.start()
        workers = Stack(
            env={**shared, **milvus, "ASSETRAG_DATA_DIR": str(dirs[2])}, log_dir=log_dir / "workers"
        )
        metrics = {name: free_port() for name in ("embed-1", "embed-2", "generate")}
        cli = [*workers.cli_argv(), "worker", "--queues"]
        workers.spawn("embed-1", [*cli, "embed", "--metrics-port", str(metrics["embed-1"])])
        workers.spawn(
            "embed-2", [*cli, "embed", "--gpu", "0", "--metrics-port", str(metrics["embed-2"])]
        )
        workers.spawn("generate", [*cli, "generate", "--metrics-port", str(metrics["generate"])])
        workers.spawn("query", [*cli, "query"])
        workers.spawn("default", [*cli, "default"])
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{s.port}", timeout=60) for s in servers]
        api_a.wait_ready(180)
        yield Fleet(clients, workers, servers, bucket, s3_server, dirs, metrics, log_dir)
    finally:
        for client in clients:
            client.close()
        if workers is not None:
            workers.stop()
        for server in servers:
            server.stop()


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_embed_over_two_workers_one_killed_then_search_and_generate(fleet: Fleet) -> None:
    api_a, api_b = fleet.apis
    images = [make_image(9000 + i) for i in range(IMAGES)]
    half = IMAGES // 2
    upload_ids: list[str] = []
    for start in range(0, half, 24):
        files = [
            ("files", (f"img_{i}.png", io.BytesIO(images[i]), "image/png"))
            for i in range(start, start + 24)
        ]
        response = api_a.post("/v1/uploads", files=files)
        assert response.status_code == 201, response.text
        upload_ids += [u["upload_id"] for u in response.json()["uploads"]]

    # The second half are URLs whose server holds every answer until the worker is killed,
    # so the kill lands mid-job however fast the batches run.
    gate = threading.Event()

    def held(path: str) -> tuple[int, dict[str, str], bytes]:
        gate.wait(120)
        return 200, {"Content-Type": "image/png"}, images[int(path.rsplit("/", 1)[1])]

    with serve_http(held) as url:
        items = [{"upload_id": u, "metadata": {"n": i}} for i, u in enumerate(upload_ids)]
        items += [{"url": f"{url}/img/{i}", "metadata": {"n": i}} for i in range(half, IMAGES)]
        # The job goes in through the other replica: uploads live in Redis and the bucket.
        response = api_b.post("/v1/jobs/embed", json={"collection": "fleet", "items": items})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(
            lambda: api_a.get(f"/v1/jobs/{job_id}").json()["progress"]["succeeded"] >= half,
            120,
            "the uploaded half to be embedded",
        )
        victim = fleet.workers.procs.pop("embed-1")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        assert api_a.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
        gate.set()
        job = wait_job(api_a, job_id)

    assert job["state"] == "completed", job
    assert job["progress"] == {"total": IMAGES, "succeeded": IMAGES, "failed": 0}
    asset_ids = job["result"]["asset_ids"]
    assert len(set(asset_ids)) == IMAGES
    assert api_b.get("/v1/collections/fleet").json()["count"] == IMAGES

    # Every original once in the bucket, under its content hash; nothing on any local disk.
    stored = fleet.s3.keys(fleet.bucket, "blobs/assets/")
    assert sorted(stored) == sorted(f"blobs/assets/{a[:2]}/{a}" for a in asset_ids)
    for data_dir in fleet.data_dirs:
        assert not (data_dir / "blobs").exists(), data_dir
    content = api_b.get(f"/v1/collections/fleet/assets/{asset_ids[5]}/content")
    assert content.status_code == 200 and content.content == images[5]

    search = api_b.post(
        "/v1/jobs/search",
        params={"wait": 20},
        json={"collection": "fleet", "queries": [{"asset_id": asset_ids[7]}], "top_k": 3},
    ).json()
    search = wait_job(api_b, search["id"])
    assert search["state"] == "completed", search
    assert search["result"]["results"][0][0]["asset_id"] == asset_ids[7]

    generate = api_a.post(
        "/v1/jobs/generate",
        json={
            "prompt": "the same, on a beach [fail:503x1] ~scale-out",  # one retry
            "collection": "fleet",
            "references": {"asset_ids": asset_ids[:2]},
            "save_to_collection": True,
        },
    ).json()
    generate = wait_job(api_a, generate["id"])
    assert generate["state"] == "completed", generate
    [image] = generate["result"]["images"]
    made = api_b.get(image["content_url"])  # written by the generate worker, read by API B
    assert made.status_code == 200 and made.content.startswith(b"\x89PNG")
    saved = api_b.get(f"/v1/collections/fleet/assets/{image['asset_id']}/content")
    assert saved.status_code == 200

    # The surviving embed worker (on "GPU 0": it announces itself so) did the rest.
    embed_hosts = api_a.get("/readyz").json()["queues"]["embed"]
    assert any("-gpu0-" in host for host in embed_hosts), embed_hosts
    embed = scrape(fleet.metrics["embed-2"])
    assert embed['assetrag_embed_images_total{"outcome": "stored"}'] >= BATCH
    assert embed['assetrag_embed_batch_stage_seconds_count{"stage": "encode"}'] >= 1
    assert any(k.startswith("assetrag_model_load_seconds{") for k in embed)
    # the survivor ran the last batch, which ended the job
    assert embed['assetrag_jobs_finished_total{"kind": "embed", "state": "completed"}'] == 1
    gemini = scrape(fleet.metrics["generate"])
    assert gemini['assetrag_gemini_request_seconds_count{"outcome": "ok"}'] >= 1
    assert gemini["assetrag_gemini_retries_total{}"] >= 1
    # a saving generate job ends on the embed worker that stores its image (light Gemini workers)
    finished = 'assetrag_jobs_finished_total{"kind": "generate", "state": "completed"}'
    assert gemini.get(finished, 0) + embed.get(finished, 0) == 1
    assert (
        gemini['assetrag_tasks_total{"outcome": "success", "task": "assetrag.generate.run"}'] >= 1
    )

    # ASSETRAG_LOG_FORMAT=json: every line a worker wrote is a JSON object.
    lines = [
        json.loads(line)
        for name in ("embed-1", "embed-2", "generate")
        for line in (fleet.log_dir / "workers" / f"{name}.log").read_text().splitlines()
    ]
    batch_lines = [e for e in lines if e["job_id"] == job_id and e["batch_id"]]
    assert batch_lines, "no JSON log line carries the job and batch ids"
    assert all(e["batch_id"].startswith("b") for e in batch_lines)
    # the Gemini retry is logged on the worker's event loop thread, with the job's id
    retried = [e for e in lines if e["logger"] == "shared.gemini" and "retrying" in e["message"]]
    assert [e["job_id"] for e in retried] == [generate["id"]]
    api_lines = (fleet.log_dir / "api-a" / "api.log").read_text().splitlines()
    assert api_lines and all(json.loads(line)["level"] for line in api_lines)
