"""The API under schemathesis, every check on, positive and negative data, against the real app
served by uvicorn (Redis, Milvus Lite): no server error, no status the OpenAPI does not
declare, no schema-valid request refused, no schema-invalid request accepted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
import uvicorn
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cli.stack import free_port
from shared.clip.registry import ModelRegistry
from shared.milvus.gateway import VectorStore
from shared.settings import Settings

FUZZ_DB = 7
EXAMPLES = 30


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_port: int, tiny_clip: Path
) -> Iterator[str]:
    from api.main import create_app

    base = tmp_path_factory.mktemp("fuzz")
    (base / "library").mkdir()
    redis.Redis(port=redis_port, db=FUZZ_DB).flushdb()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{redis_port}/{FUZZ_DB}",
        data_dir=base / "data",
        clip_model=str(tiny_clip),
        library_roots=[base / "library"],
        gemini_api_key="test-key",
        webhook_secret="whsec_c2VjcmV0",
    )
    # What a worker leaves behind: the model's dimension, and a collection to hit now and then
    # (schemathesis draws names from the pattern too).
    ModelRegistry(redis.Redis(port=redis_port, db=FUZZ_DB)).record(str(tiny_clip), 48)
    VectorStore(settings.resolved_milvus_uri).ensure_collection("products", 48, str(tiny_clip))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def published_schema() -> Any:
    """The OpenAPI document the app publishes (with default settings, as the server below)."""
    from api.main import create_app

    document = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
    )
    return loaded


schema = published_schema()


@schema.parametrize()
def test_the_api_keeps_its_contract(case: Any, served: str) -> None:
    excluded = []
    if case.operation.path == "/v1/uploads":
        # The schema says "image files"; JSON Schema cannot say which bytes are an image, so
        # random bytes are schema-valid there and rightly refused (415).
        excluded.append(positive_data_acceptance)
    if isinstance(case.body, dict) and "webhook" in case.body:
        # A webhook's host must resolve to a public address, which a schema cannot say
        # either: drawn hosts are rightly refused (422 unresolvable_host, forbidden_address).
        excluded.append(positive_data_acceptance)
    if case.operation.path == "/readyz":
        # 503 is its documented answer while no worker runs (none does here).
        excluded.append(not_a_server_error)
    # One Idempotency-Key drawn twice with two bodies is rightly refused (422), and `wait`
    # holds a request up to 30 s with no worker to finish the job: both are exercised in
    # test_routes.py; here they would only slow the fuzz.
    if case.headers:
        case.headers.pop("Idempotency-Key", None)
    if case.query:
        case.query.pop("wait", None)
    case.call_and_validate(base_url=served, excluded_checks=excluded)
