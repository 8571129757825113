"""The commands a Kubernetes pod runs besides its worker: `fetch-model` (an init container
filling the model cache volume once) and `worker-ready` (the startup probe)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import clip
import pytest
import redis
from typer.testing import CliRunner

from cli.app import app
from shared.heartbeats import WorkerHeartbeat
from shared.settings import get_settings
from tests.support.http import serve_http

runner = CliRunner()
WEIGHTS = b"not really weights, but bytes with a known digest" * 100


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A published model served from loopback, as OpenAI's CDN serves theirs (the file's
    SHA-256 in its URL); the paths asked for, in order."""
    asked: list[str] = []

    def respond(path: str) -> tuple[int, dict[str, str], bytes]:
        asked.append(path)
        return 200, {"Content-Type": "application/octet-stream"}, WEIGHTS

    digest = hashlib.sha256(WEIGHTS).hexdigest()
    with serve_http(respond) as url:
        monkeypatch.setitem(clip.clip._MODELS, "Test/1", f"{url}/clip/{digest}/Test-1.pt")
        yield asked


def test_fetch_model_downloads_once_into_the_cache(published: list[str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = runner.invoke(app, ["fetch-model", "Test/1", "--cache", str(cache)])
    assert first.exit_code == 0, first.output
    assert (cache / "Test-1.pt").read_bytes() == WEIGHTS
    assert [p.name for p in cache.iterdir()] == ["Test-1.pt"]  # no scratch folder left
    again = runner.invoke(app, ["fetch-model", "Test/1", "--cache", str(cache)])
    assert again.exit_code == 0, again.output
    assert len(published) == 1  # the second pod found it there


def test_fetch_model_replaces_a_half_written_file(published: list[str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "Test-1.pt").write_bytes(WEIGHTS[:100])  # a download cut short
    result = runner.invoke(app, ["fetch-model", "Test/1", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    assert (cache / "Test-1.pt").read_bytes() == WEIGHTS


def test_fetch_model_of_a_checkpoint_file_or_an_unknown_name(tmp_path: Path) -> None:
    checkpoint = tmp_path / "own.pt"
    checkpoint.write_bytes(b"x")
    assert runner.invoke(app, ["fetch-model", str(checkpoint)]).exit_code == 0
    unknown = runner.invoke(app, ["fetch-model", "ViT-Q/99"])
    assert unknown.exit_code == 2 and "neither" in unknown.output


@pytest.fixture
def unit_redis(
    redis_client: redis.Redis, redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[redis.Redis]:
    db = redis_client.connection_pool.connection_kwargs["db"]
    monkeypatch.setenv("ASSETRAG_REDIS_URL", f"redis://127.0.0.1:{redis_port}/{db}")
    get_settings.cache_clear()
    yield redis_client
    get_settings.cache_clear()


def test_worker_ready_once_a_worker_on_this_host_beats(unit_redis: redis.Redis) -> None:
    host = socket.gethostname()
    heartbeat = WorkerHeartbeat(unit_redis)
    heartbeat.beat("embed-1@another-pod", ["embed"])
    waiting = runner.invoke(app, ["worker-ready"])
    assert waiting.exit_code == 1 and "consuming yet" in waiting.output
    heartbeat.beat(f"embed-gpu0-7@{host}", ["embed"])
    ready = runner.invoke(app, ["worker-ready"])
    assert ready.exit_code == 0, ready.output
    assert f"embed-gpu0-7@{host}" in ready.output
