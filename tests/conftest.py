"""Fixtures: a private Redis server, a tiny CLIP checkpoint, Milvus Lite, and the whole stack.

Unit tests get an in-process API (TestClient, lifespan run) and worker context on Milvus Lite
under tmp_path. Integration tests share one real stack per session: Redis, the Milvus Lite
server, one Celery worker per queue and the API, each a separate process.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from cli.stack import Stack, free_port, wait_for_port
from shared.settings import Settings
from tests.support.clip_checkpoint import build_tiny_checkpoint
from tests.support.open_clip_models import MODELS as OPEN_CLIP_MODELS
from tests.support.stack import OUTPUT, WEBHOOK_SECRET, InProcess, RunningStack

STACK_DB = 0
UNIT_DB = 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran on the stack reports what its processes logged as wrong."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, RunningStack):
        report.sections.append(("stack warnings and errors", stack.logged_errors()))
    return report


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, 20, proc)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Milvus 2.3.5 server (the `milvus` package), in a network namespace of its own."""
    from tests.support.milvus_server import start_milvus_server

    server = start_milvus_server(tmp_path_factory.mktemp("milvus-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-protocol server (moto's server mode; see tests/support/s3_server.py)."""
    from tests.support.s3_server import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny-clip.pt")


@pytest.fixture(scope="session")
def other_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model, of another dimension: what a collection is re-indexed to."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "other-clip.pt", embed_dim=64)


@pytest.fixture(scope="session")
def open_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An offline model folder (ASSETRAG_MODEL_DIR) with reduced SigLIP 2 and multilingual
    XLM-RoBERTa models (tests/support/open_clip_models.py)."""
    from tests.support.open_clip_models import build_all

    folder = tmp_path_factory.mktemp("open_clip")
    build_all(folder)
    return folder


@pytest.fixture
def redis_client(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port, db=UNIT_DB)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    return root


@pytest.fixture
def settings(
    tmp_path: Path,
    redis_port: int,
    redis_client: redis.Redis,
    tiny_clip: Path,
    other_clip: Path,
    library: Path,
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{redis_port}/{UNIT_DB}",
        data_dir=tmp_path / "data",
        clip_model=str(tiny_clip),
        clip_models=[str(other_clip)],
        device="cpu",
        precision="fp32",
        library_roots=[library],
        embed_batch_size=8,
        gemini_api_key="test-key",
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def inproc(settings: Settings, fake_gemini: Any) -> Iterator[InProcess]:
    from api.main import create_app
    from tests.support.inline import InlineQueue
    from workers.context import build_context

    settings = settings.model_copy(update={"gemini_base_url": fake_gemini.base_url})
    ctx = build_context(settings)
    ctx.queue = queue = InlineQueue(ctx)
    with TestClient(create_app(settings)) as client:
        try:
            yield InProcess(client, ctx, queue, settings)
        finally:
            queue.drain()
            queue.close()
            ctx.close()


@pytest.fixture(scope="session")
def fake_gemini() -> Iterator[Any]:
    from tests.support.fake_gemini import FakeGemini

    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["lite", "milvus"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_port: int,
    tiny_clip: Path,
    other_clip: Path,
    open_clip_dir: Path,
    fake_gemini: Any,
) -> Iterator[RunningStack]:
    """The whole service as real processes, on Milvus Lite (its gRPC server, as `assetrag up`
    runs it) or on a real Milvus server: tests using it run on both."""
    base = tmp_path_factory.mktemp(f"stack-{request.param}")
    library = base / "library"
    library.mkdir()
    redis.Redis(port=redis_port, db=STACK_DB).flushdb()
    env = {
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/{STACK_DB}",
        "ASSETRAG_DATA_DIR": str(base / "data"),
        "ASSETRAG_CLIP_MODEL": str(tiny_clip),
        "ASSETRAG_CLIP_MODELS": ",".join([str(other_clip), *OPEN_CLIP_MODELS]),
        "ASSETRAG_MODEL_DIR": str(open_clip_dir),
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_PRECISION": "fp32",
        "ASSETRAG_LIBRARY_ROOTS": str(library),
        "ASSETRAG_EMBED_BATCH_SIZE": "16",
        "ASSETRAG_GEMINI_API_KEY": "test-key",
        "ASSETRAG_GEMINI_BASE_URL": fake_gemini.base_url,
        "ASSETRAG_GEMINI_RPM": "0",
        "ASSETRAG_BLOB_SWEEP_S": "1",
        "ASSETRAG_DUPLICATES_BATCH_SIZE": "4",
        "ASSETRAG_GEMINI_BATCH_POLL_S": "0.5",
        "ASSETRAG_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ASSETRAG_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    }
    if request.param == "milvus":
        env["ASSETRAG_MILVUS_URI"] = request.getfixturevalue("milvus_server").uri
        # texts encoded in the query worker's child here, in process (the default) on Lite:
        # every integration test runs through both paths
        env["ASSETRAG_QUERY_TEXT_PROCESS"] = "true"
    port = free_port()
    logs = OUTPUT / "stack-logs" / request.param
    shutil.rmtree(logs, ignore_errors=True)  # a failed test's report reads this run's logs
    running = Stack(port=port, env=env, log_dir=logs)
    running.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        running.wait_ready(120)
        yield RunningStack(running, f"http://127.0.0.1:{port}", library, client, request.param)
    finally:
        client.close()
        running.stop()
