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
