"""The API under schemathesis, every check on, positive and negative data, against the real app
served by uvicorn (Redis, Milvus Lite): no server error, no status the OpenAPI does not
declare, no schema-valid request refused, no schema-invalid request accepted."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

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


class Servers(NamedTuple):
    hooks: str  # webhooks configured (a secret set)
    no_hooks: str  # webhooks off: a submit carrying one is refused


@contextlib.contextmanager
def serve(base: Path, redis_port: int, db: int, tiny_clip: Path, **options: Any) -> Iterator[str]:
    """The app under uvicorn on its own port, Redis db and data; its URL."""
    from api.main import create_app

    (base / "library").mkdir(parents=True)
    redis.Redis(port=redis_port, db=db).flushdb()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{redis_port}/{db}",
        data_dir=base / "data",
        clip_model=str(tiny_clip),
        library_roots=[base / "library"],
        gemini_api_key="test-key",
        **options,
    )
    # What a worker leaves behind: the model's dimension, and a collection to hit now and then
    # (schemathesis draws names from the pattern too).
    ModelRegistry(redis.Redis(port=redis_port, db=db)).record(str(tiny_clip), 48)
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
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_port: int, tiny_clip: Path
) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("fuzz")
    with (
        serve(
            base / "hooks", redis_port, FUZZ_DB, tiny_clip, webhook_secret="whsec_c2VjcmV0"
        ) as hooks,
        serve(base / "no-hooks", redis_port, FUZZ_DB + 1, tiny_clip) as no_hooks,
    ):
        yield Servers(hooks, no_hooks)


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


def refused_by_rules_a_schema_cannot_say(case: Any) -> bool:
    from pydantic import ValidationError

    from shared.contract import GenerateRequest
    from shared.errors import CodedError
    from shared.rules import check_sources

    if case.operation.path != "/v1/jobs/generate" or not isinstance(case.body, dict):
        return False
    try:
        request = GenerateRequest.model_validate(case.body)
    except ValidationError:
        return False
    model = Settings(_env_file=None).gemini_model  # type: ignore[call-arg]
    for item in request.generations():
        if any(source.url is not None for source in item.sources):
            return True
        try:
            check_sources(model, item, request.mode == "batch")
        except CodedError:
            return True
    return False


@schema.parametrize()
def test_the_api_keeps_its_contract(case: Any, served: Servers) -> None:
    excluded = []
    if case.operation.path == "/v1/uploads":
        # The schema says "image files"; JSON Schema cannot say which bytes are an image, so
        # random bytes are schema-valid there and rightly refused (415).
        excluded.append(positive_data_acceptance)
    if isinstance(case.body, dict) and "webhook" in case.body:
        # A webhook's host must resolve to a public address, which a schema cannot say
        # either: drawn hosts are rightly refused (422 unresolvable_host, forbidden_address),
        # as is any webhook where webhooks are off (422 webhook_not_configured).
        excluded.append(positive_data_acceptance)
    if refused_by_rules_a_schema_cannot_say(case):
        # A generation's images are summed over its sources (a query counts its top_k), one
        # base at most, and a URL's host must be public: rules of the whole request, refused
        # with a documented 422 (tests/integration/test_compose.py has each).
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
    case.call_and_validate(base_url=served.hooks, excluded_checks=excluded)
    if isinstance(case.body, dict) and "webhook" in case.body:
        # where webhooks are off the same request is refused, with a documented 4xx
        case.call_and_validate(base_url=served.no_hooks, excluded_checks=excluded)


def test_the_openapi_states_what_submits_and_uploads_are_refused_with() -> None:
    """The limits found by fuzzing are in the published document, so a client generated from
    it knows them: every submit that takes a webhook says it may be refused where webhooks
    are off (a 4xx: the request will never be taken, so it is not one to retry) and bounds
    the URL; an upload needs at least one file."""
    from api.main import create_app

    document = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    components = document["components"]["schemas"]
    takes_webhook = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ref = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
                .get("$ref", "")
            )
            body = components.get(ref.rsplit("/", 1)[-1], {})
            if "webhook" not in body.get("properties", {}):
                continue
            takes_webhook.append(f"{method} {path}")
            assert body["properties"]["webhook"]["maxLength"] == 2048
            responses = operation["responses"]
            assert "webhook_not_configured" in responses["422"]["description"], path
            assert "webhook_not_configured" not in responses.get("503", {}).get("description", "")
    assert len(takes_webhook) >= 5, takes_webhook  # embed, search, generate, duplicates, reindex
    uploads = components["Body_upload_files_v1_uploads_post"]
    assert uploads["required"] == ["files"] and uploads["properties"]["files"]["minItems"] == 1


def test_a_webhook_url_is_bounded_as_sent_as_the_schema_says() -> None:
    """maxLength counts the URL as sent; pydantic normalises it first (a trailing "/", non-ASCII
    percent-encoded), which must not turn an allowed length into a refused one."""
    from pydantic import TypeAdapter, ValidationError

    from shared.contract import Webhook

    webhook: TypeAdapter[Any] = TypeAdapter(Webhook)
    for allowed in ("https://" + "a" * 2040, "https://example.com/" + "é" * 1000):
        assert len(allowed) <= 2048
        webhook.validate_python(allowed)
    with pytest.raises(ValidationError, match="at most 2048"):
        webhook.validate_python("https://example.com/" + "x" * 2029)
