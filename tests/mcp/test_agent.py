"""An agent on the MCP SDK's own client against the running stack: /mcp over streamable HTTP
on an API with keys on (tenants alpha and beta), and `assetrag mcp` over stdio. Every tool is
called; images decode; a tenant sees over MCP exactly what it sees over HTTP; a bad argument
is a tool error with the API's code; rate limits apply; waiting sends progress and stops when
the client cancels."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.types import CallToolResult

from shared.contract import DuplicatesRequest, GenerateRequest
from tests.support.images import write_images
from tests.support.mcp import answer, error_code, http_session, images, keyed_api, stdio_session
from tests.support.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["lite"], indirect=True)]
KEYS = "k-alpha:alpha,k-beta:beta"
ALPHA, BETA = "k-alpha", "k-beta"
LOOKS = "mcplooks"
TOOLS = {
    "search_assets",
    "get_asset",
    "list_collections",
    "ingest",
    "get_job",
    "cancel_job",
    "generate",
    "find_duplicates",
    "list_kits",
    "brand_check",
}


@pytest.fixture(scope="module")
def keyed(stack: RunningStack) -> Iterator[str]:
    with keyed_api(stack, KEYS, "mcp-keyed") as url:
        yield url


def in_session(url: str, key: str | None, use: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with http_session(url, key) as session:
            return await use(session)

    return anyio.run(run)


def call(url: str, key: str | None, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    return in_session(url, key, lambda s: s.call_tool(tool, arguments))


def http(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def looks(stack: RunningStack, keyed: str) -> list[str]:
    """Alpha's collection, ingested through the ingest tool from server paths."""
    paths = write_images(stack.library / "mcp", 4, start=7100)
    result = call(keyed, ALPHA, "ingest", {"collection": LOOKS, "paths": [str(p) for p in paths]})
    assert not result.is_error, result
    job = answer(result)
    assert job["state"] == "completed", job
    return list(job["result"]["asset_ids"])


def test_the_tools_are_listed_with_the_contracts_schemas(keyed: str) -> None:
    listed = in_session(keyed, ALPHA, lambda s: s.list_tools()).tools
    assert {tool.name for tool in listed} == TOOLS
    by_name = {tool.name: tool for tool in listed}
    for tool in listed:
        assert tool.description and "\n" not in tool.description, tool.name
        assert tool.input_schema["type"] == "object"
    # generate takes GenerateRequest's fields, whatever they are now, and a wait
    generate = by_name["generate"].input_schema["properties"]
    assert set(generate) == {*GenerateRequest.model_json_schema()["properties"], "wait"}
    duplicates = by_name["find_duplicates"].input_schema["properties"]
    assert set(duplicates) == {*DuplicatesRequest.model_json_schema()["properties"], "wait"}
    search = by_name["search_assets"].input_schema["properties"]
    assert {"collection", "query", "asset_id", "image_base64", "top_k", "filter", "mode"} <= set(
        search
    )


def test_search_by_text_by_asset_and_by_example_image(
    stack: RunningStack, keyed: str, looks: list[str]
) -> None:
    by_text = answer(call(keyed, ALPHA, "search_assets", {"collection": LOOKS, "query": "red"}))
    assert {hit["asset_id"] for hit in by_text["hits"]} == set(looks)
    hit = by_text["hits"][0]
    assert {"asset_id", "score", "filename", "metadata", "thumbnail_url"} <= set(hit)
    assert hit["thumbnail_url"].startswith(f"{keyed}/v1/collections/{LOOKS}/assets/")
    by_asset = call(keyed, ALPHA, "search_assets", {"collection": LOOKS, "asset_id": looks[1]})
    assert answer(by_asset)["hits"][0]["asset_id"] == looks[1]
    example = sorted((stack.library / "mcp").glob("*.png"))[2].read_bytes()
    arguments = {"collection": LOOKS, "image_base64": base64.b64encode(example).decode()}
    by_image = answer(call(keyed, ALPHA, "search_assets", {**arguments, "top_k": 2}))
    assert [h["asset_id"] for h in by_image["hits"]][0] == looks[2]
    assert len(by_image["hits"]) == 2


def test_get_asset_answers_the_record_and_its_thumbnail(keyed: str, looks: list[str]) -> None:
    result = call(keyed, ALPHA, "get_asset", {"collection": LOOKS, "asset_id": looks[0]})
    assert not result.is_error, result
    record = answer(result)
    assert record["asset_id"] == looks[0]
    [thumbnail] = images(result)
    assert max(thumbnail.size) <= 256
    with http(keyed, ALPHA) as client:
        assert client.get(record["content_url"]).status_code == 200


def test_list_collections(keyed: str, looks: list[str]) -> None:
    listed = answer(call(keyed, ALPHA, "list_collections", {}))["collections"]
    [mine] = [c for c in listed if c["name"] == LOOKS]
    assert mine["count"] == len(looks)


def test_generate_answers_the_finished_job_with_its_images(
    stack: RunningStack, keyed: str, looks: list[str]
) -> None:
    arguments = {
        "collection": LOOKS,
        "prompt": stack.tag("the look on a model, golden hour"),
        "count": 2,
        "aspect_ratio": "1:1",
        "wait": 60,
    }
    result = call(keyed, ALPHA, "generate", arguments)
    assert not result.is_error, result
    job = answer(result)
    assert job["state"] == "completed", job
    made = images(result)
    assert len(made) == 2 and all(image.size == (64, 64) for image in made)


def test_find_duplicates(keyed: str, looks: list[str]) -> None:
    arguments = {"collection": LOOKS, "threshold": 0.5}
    job = answer(call(keyed, ALPHA, "find_duplicates", arguments))
    assert job["state"] == "completed", job
    assert job["result"]["scanned"] == len(looks)


@pytest.fixture(scope="module")
def kit(keyed: str, looks: list[str]) -> str:
    """Alpha's brand kit of one of its looks."""
    with http(keyed, ALPHA) as client:
        made = client.post(
            "/v1/kits",
            json={"name": "mcp-house", "collection": LOOKS, "references": looks[:1]},
        )
    assert made.status_code == 201, made.text
    return "mcp-house"


def test_list_kits_and_generate_and_audit_with_one(
    stack: RunningStack, keyed: str, looks: list[str], kit: str
) -> None:
    kits = answer(call(keyed, ALPHA, "list_kits", {}))["kits"]  # other tests' alpha kits too
    [listed] = [k for k in kits if k["name"] == kit]
    assert listed["references"] == looks[:1]
    arguments = {"collection": LOOKS, "prompt": stack.tag("on-brand look"), "kit": kit, "wait": 60}
    job = answer(call(keyed, ALPHA, "generate", arguments))
    assert job["state"] == "completed", job
    assert job["result"]["brand"]["kit"] == f"{kit}@1"
    audit = answer(call(keyed, ALPHA, "brand_check", {"collection": LOOKS, "kit": kit, "wait": 60}))
    assert audit["state"] == "completed", audit
    assert audit["result"]["checked"] >= len(looks)
    with http(keyed, BETA) as client:
        over_http = client.get("/v1/kits").json()["data"]
    assert answer(call(keyed, BETA, "list_kits", {}))["kits"] == over_http
    assert kit not in [k["name"] for k in over_http]


def test_waiting_on_a_job_sends_progress(stack: RunningStack, keyed: str) -> None:
    paths = [str(p) for p in write_images(stack.library / "mcp-progress", 6, start=7200)]
    job = answer(call(keyed, ALPHA, "ingest", {"collection": "mcpmore", "paths": paths, "wait": 0}))
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    arguments = {"job_id": job["id"], "wait": 120}
    result = in_session(
        keyed, ALPHA, lambda s: s.call_tool("get_job", arguments, progress_callback=progress)
    )
    assert answer(result)["state"] == "completed"
    assert seen, "no progress notification"
    assert seen[-1][:2] == (6.0, 6.0), seen
    assert job["id"] in (seen[-1][2] or "")


def metric(url: str, route: str) -> float:
    """GET requests the API answered on a route (its own /metrics), all statuses."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    labels = rf'method="GET",route="{re.escape(route)}",[^}}]*'
    pattern = rf"assetrag_http_requests_total{{{labels}}} (\S+)"
    return sum(float(n) for n in re.findall(pattern, text))


def test_a_cancelled_call_stops_waiting_and_the_job_runs_on(
    stack: RunningStack, keyed: str, looks: list[str]
) -> None:
    arguments = {"collection": LOOKS, "prompt": stack.tag("[slow:6] a slow one"), "wait": 120}

    async def cancelled(session: ClientSession) -> None:
        with anyio.move_on_after(2):
            await session.call_tool("generate", arguments)
            raise AssertionError("the call was not cancelled")
        await anyio.sleep(0.5)  # the cancel reaches the server

    in_session(keyed, ALPHA, cancelled)
    before = metric(keyed, "/v1/jobs/{job_id}")
    assert before > 0  # the call did poll the job while it waited
    time.sleep(2.5)
    assert metric(keyed, "/v1/jobs/{job_id}") == before, "the server still polls the job"
    with http(keyed, ALPHA) as client:
        [job] = client.get("/v1/jobs", params={"kind": "generate", "limit": 1}).json()["data"]
    assert job["state"] in ("queued", "running", "completed"), job


def test_cancel_job(stack: RunningStack, keyed: str, looks: list[str]) -> None:
    arguments = {"collection": LOOKS, "prompt": stack.tag("[slow:3] to cancel"), "wait": 0}
    job = answer(call(keyed, ALPHA, "generate", arguments))
    cancelled = call(keyed, ALPHA, "cancel_job", {"job_id": job["id"]})
    assert not cancelled.is_error, cancelled
    assert answer(cancelled)["state"] in ("cancelling", "cancelled")
    again = call(keyed, ALPHA, "get_job", {"job_id": job["id"], "wait": 60})
    assert answer(again)["state"] == "cancelled"


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("search_assets", {"collection": LOOKS, "query": "red", "top_k": 1000}, "invalid_request"),
        ("search_assets", {"collection": "nosuch", "query": "red"}, "collection_not_found"),
        ("search_assets", {"collection": LOOKS}, "invalid_request"),
        ("get_asset", {"collection": LOOKS, "asset_id": "0" * 64}, "asset_not_found"),
        ("get_job", {"job_id": "A" * 24}, "job_not_found"),
        ("generate", {"collection": LOOKS}, "invalid_request"),
        ("generate", {"collection": LOOKS, "prompt": "x", "count": 99}, "invalid_request"),
        ("find_duplicates", {"collection": LOOKS, "threshold": 2}, "invalid_request"),
        ("no_such_tool", {}, "not_found"),
    ],
)
def test_a_bad_argument_is_a_tool_error_with_the_apis_code(
    keyed: str, looks: list[str], tool: str, arguments: dict[str, Any], code: str
) -> None:
    result = call(keyed, ALPHA, tool, arguments)
    assert result.is_error, result
    assert error_code(result) == code, answer(result)
    assert answer(result)["error"]["message"]


def test_an_item_the_api_refuses_is_an_item_error_on_the_job(keyed: str) -> None:
    arguments = {"collection": LOOKS, "paths": ["/etc/passwd"]}
    result = call(keyed, ALPHA, "ingest", arguments)
    assert not result.is_error, result  # the job ran; its item failed, as over HTTP
    assert [e["code"] for e in answer(result)["errors"]] == ["path_outside_roots"]


def test_a_finished_job_cannot_be_cancelled(keyed: str, looks: list[str]) -> None:
    with http(keyed, ALPHA) as client:
        [job] = client.get("/v1/jobs", params={"kind": "embed", "limit": 1}).json()["data"]
    assert error_code(call(keyed, ALPHA, "cancel_job", {"job_id": job["id"]})) == "job_finished"


# ── tenants: beta's agent sees what beta sees over HTTP ────────────────────────────────────


def alpha_job(keyed: str) -> str:
    with http(keyed, ALPHA) as client:
        return str(client.get("/v1/jobs", params={"limit": 1}).json()["data"][0]["id"])


ISOLATION: dict[str, Callable[[str, list[str]], tuple[dict[str, Any], str, str, Any]]] = {
    # tool: (its arguments, and the HTTP request beta would send for the same)
    "search_assets": lambda k, ids: (
        {"collection": LOOKS, "query": "red"},
        "POST",
        "/v1/jobs/search",
        {"collection": LOOKS, "queries": [{"text": "red"}]},
    ),
    "get_asset": lambda k, ids: (
        {"collection": LOOKS, "asset_id": ids[0]},
        "GET",
        f"/v1/collections/{LOOKS}/assets/{ids[0]}",
        None,
    ),
    "get_job": lambda k, ids: ({"job_id": (j := alpha_job(k))}, "GET", f"/v1/jobs/{j}", None),
    "cancel_job": lambda k, ids: (
        {"job_id": (j := alpha_job(k))},
        "POST",
        f"/v1/jobs/{j}/cancel",
        None,
    ),
    "generate": lambda k, ids: (
        {"collection": LOOKS, "prompt": "x", "references": {"asset_ids": ids[:1]}},
        "POST",
        "/v1/jobs/generate",
        {"collection": LOOKS, "prompt": "x", "references": {"asset_ids": ids[:1]}},
    ),
    "find_duplicates": lambda k, ids: (
        {"collection": LOOKS},
        "POST",
        "/v1/jobs/duplicates",
        {"collection": LOOKS},
    ),
    "brand_check": lambda k, ids: (
        {"collection": LOOKS, "kit": "mcp-house"},
        "POST",
        "/v1/jobs/brand-check",
        {"collection": LOOKS, "kit": "mcp-house"},
    ),
}


@pytest.mark.parametrize("tool", sorted(ISOLATION))
def test_a_tenant_sees_over_mcp_what_it_sees_over_http(
    keyed: str, looks: list[str], kit: str, tool: str
) -> None:
    arguments, method, path, body = ISOLATION[tool](keyed, looks)
    with http(keyed, BETA) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 404, response.text  # alpha's, so not there for beta
    result = call(keyed, BETA, tool, arguments)
    assert error_code(result) == response.json()["error"]["code"], answer(result)


def test_a_tenant_lists_and_ingests_only_its_own(
    stack: RunningStack, keyed: str, looks: list[str]
) -> None:
    def names(key: str) -> set[str]:
        return {c["name"] for c in answer(call(keyed, key, "list_collections", {}))["collections"]}

    with http(keyed, BETA) as client:
        over_http = {c["name"] for c in client.get("/v1/collections").json()["data"]}
    assert names(BETA) == over_http and LOOKS not in over_http
    paths = [str(p) for p in sorted((stack.library / "mcp").glob("*.png"))[:2]]
    job = answer(call(keyed, BETA, "ingest", {"collection": "mcpbeta", "paths": paths}))
    assert job["state"] == "completed", job
    assert "mcpbeta" in names(BETA) and "mcpbeta" not in names(ALPHA)


# ── the key and the rate limit ──────────────────────────────────────────────────────────────


def test_without_a_key_mcp_answers_401(keyed: str) -> None:
    response = httpx.post(f"{keyed}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    with pytest.raises(BaseException):  # noqa: B017 - the SDK raises it inside a task group
        in_session(keyed, None, lambda s: s.list_tools())


def test_rate_limits_apply_to_tool_calls(stack: RunningStack) -> None:
    limits = {"ASSETRAG_RATE_LIMIT_PER_S": "0.1", "ASSETRAG_RATE_LIMIT_BURST": "2"}
    with keyed_api(stack, "k-slow:slow", "mcp-limited", **limits) as url:

        async def three(session: ClientSession) -> list[CallToolResult]:
            return [await session.call_tool("list_collections", {}) for _ in range(3)]

        results = in_session(url, "k-slow", three)
    assert [r.is_error for r in results] == [False, False, True]
    assert error_code(results[2]) == "rate_limited"


# ── stdio: `assetrag mcp` for desktop agents ────────────────────────────────────────────────


def test_the_stdio_server_speaks_to_the_api_by_url_and_key(keyed: str, looks: list[str]) -> None:
    async def run() -> tuple[set[str], Any, CallToolResult]:
        async with stdio_session(keyed, ALPHA) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            listed = answer(await session.call_tool("list_collections", {}))
            arguments = {"collection": LOOKS, "asset_id": looks[3]}
            return tools, listed, await session.call_tool("get_asset", arguments)

    tools, listed, asset = anyio.run(run)
    assert tools == TOOLS
    assert LOOKS in {c["name"] for c in listed["collections"]}
    assert answer(asset)["thumbnail_url"].startswith(f"{keyed}/v1/")
    assert len(images(asset)) == 1
