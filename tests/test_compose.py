"""docker-compose.yml against the official Compose schema, and the services scale-out needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"  # a copy: see its README


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
