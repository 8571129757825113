"""docker-compose.yml against the official Compose schema, and the services scale-out needs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"  # a copy: see its README
GENERATOR = ROOT / "deploy" / "compose" / "gpu_workers.py"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_matches_the_official_schema(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_compose_has_the_scale_out_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "redis",
        "etcd",
        "minio",
        "milvus",
        "api",
        "worker-embed",
        "worker-query",
        "worker-generate",
        "worker-default",
    } <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["milvus"]["depends_on"]["etcd"]["condition"] == "service_healthy"
    [device] = services["worker-embed"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    for name in ("worker-embed", "worker-query", "worker-generate", "api"):
        assert services[name]["environment"]["ASSETRAG_MILVUS_URI"] == "http://milvus:19530"
    assert "healthcheck" in services["api"]


WORKERS = ("worker-embed", "worker-query", "worker-generate", "worker-default")


def test_blobs_live_in_minio_through_s3_and_no_volume_is_shared(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", *WORKERS):
        env = services[name]["environment"]
        assert env["ASSETRAG_BLOB_URI"].startswith("s3://"), name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env), name
        # no volume is shared between the API and the workers (so any may run elsewhere)
        assert not [v for v in services[name].get("volumes", []) if "blobs" in v], name
        # started only once Redis and Milvus answer and the bucket exists
        conditions = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert conditions == {
            "redis": "service_healthy",
            "milvus": "service_healthy",
            "minio-bucket": "service_completed_successfully",
        }, name
    assert "blobs" not in compose["volumes"]
    bucket = services["minio-bucket"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing local/assetrag" in bucket["command"][0]
    assert services["api"]["environment"]["ASSETRAG_BLOB_URI"].startswith("s3://assetrag/")


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("redis", "etcd", "minio", "milvus", "api", *WORKERS):
        assert services[name]["healthcheck"]["test"], name


def test_embed_workers_reserve_a_gpu_and_scale_by_replicas(compose: dict[str, Any]) -> None:
    embed = compose["services"]["worker-embed"]
    assert embed["command"][-2:] == ["--queues", "embed"]
    assert embed["environment"]["ASSETRAG_DEVICE"] == "cuda"
    assert isinstance(embed["deploy"]["replicas"], int)
    [device] = embed["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["count"]) == ("nvidia", 1)


def test_slim_api_image_metrics_and_json_logs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["build"]["target"] == "api"  # the Dockerfile stage without torch
    assert all(services[name]["build"]["target"] == "worker" for name in WORKERS)
    dockerfile = (ROOT / "Dockerfile").read_text()
    api_stage = dockerfile.split("FROM base AS api", 1)[1].split("FROM ", 1)[0]
    assert '".[ml]"' not in api_stage and "pip install" in api_stage
    for name in WORKERS:
        env = services[name]["environment"]
        assert env["ASSETRAG_METRICS_PORT"] == "9100" and env["ASSETRAG_METRICS_HOST"] == "0.0.0.0"
        assert env["ASSETRAG_LOG_FORMAT"] == "json"
    assert "--appendfsync" in services["redis"]["command"]


def gpu_workers_module() -> Any:
    """deploy/compose/gpu_workers.py, a script (no package), loaded from its path."""
    spec = importlib.util.spec_from_file_location("gpu_workers", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_embed_worker_per_gpu_generated(
    compose: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    gpus = ["0", "1", "GPU-8f2e1c3a-0b4d-4e5f-9a6b-7c8d9e0f1a2b"]
    assert gpu_workers_module().main(["--gpus", ",".join(gpus)]) == 0
    override = yaml.safe_load(capsys.readouterr().out)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(override)
    merged = dict(compose["services"])
    for name, service in override["services"].items():
        merged[name] = service if name not in merged else _merge(merged[name], service)
    embed = {n: s for n, s in merged.items() if s.get("command", [])[-2:] == ["--queues", "embed"]}
    running = {n: s for n, s in embed.items() if s["deploy"]["replicas"] > 0}
    assert sorted(running) == [
        "worker-embed-gpu0",
        "worker-embed-gpu1",
        "worker-embed-gpugpu-8f2e1c3a-0b4d-4e5f-9a6b-7c8d9e0f1a2b",
    ]
    pinned = []
    for service in running.values():
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert "count" not in device and device["capabilities"] == ["gpu"]
        pinned += device["device_ids"]
        # the rest is worker-embed's own: same image, command, environment, checks
        template = compose["services"]["worker-embed"]
        for key in ("build", "command", "environment", "healthcheck", "depends_on", "volumes"):
            assert service[key] == template[key], key
    assert pinned == gpus


def test_the_generator_refuses_what_is_not_a_gpu() -> None:
    with pytest.raises(ValueError, match="not a GPU"):
        gpu_workers_module().gpu_services({"services": {"worker-embed": {}}}, ["all"])


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override into a service, for the mappings used here."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merge(base[key], value) if both else value
    return out
