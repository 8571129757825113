"""The MCP server over a `ServiceClient`: lists the tools and runs a call, answering every
expected failure as a tool error (isError) with the API's `{"error": {"code", "message"}}`.

Built on the SDK's low-level `Server` rather than `MCPServer`: `MCPServer` derives a tool's
input schema from a Python signature and validates arguments itself, where here each schema
is the contract's own (`schemas.py`) and the API does the validating, so that a refusal
carries the API's error code. `serve_stdio` is `assetrag mcp`; `/mcp` is in `http.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

from api.mcp.client import ServiceClient, ToolFailure
from api.mcp.tools import TOOLS, TOOLS_BY_NAME, Call
from shared.contract import ErrorCode

log = logging.getLogger("assetrag.mcp")

INSTRUCTIONS = (
    "assetrag: a media library of images embedded with CLIP. list_collections, then "
    "search_assets to find assets by text, asset id or example image, get_asset to look at "
    "one, generate to make new images from a prompt and references, get_job to follow a job."
)

# How a call's Authorization header is found: the HTTP request's own (/mcp), or the one key
# the stdio server was started with.
AuthorizationOf = Callable[[ServerRequestContext[Any, Any]], str | None]


def header_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    headers = getattr(ctx.request, "headers", None)
    return headers.get("authorization") if headers is not None else None


def public_url_of(ctx: ServerRequestContext[Any, Any], default: str) -> str:
    """The API's address as this caller reached /mcp; the client's own over stdio."""
    base = getattr(ctx.request, "base_url", None)
    return str(base) if base is not None else default


def listed_tools() -> list[Tool]:
    return [
        Tool(
            name=spec.name,
            description=spec.description,
            input_schema=spec.input_schema,
            annotations=spec.annotations,
        )
        for spec in TOOLS
    ]


def tool_error(code: str, message: str) -> CallToolResult:
    body = {"error": {"code": code, "message": message}}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body))],
        structured_content=body,
        is_error=True,
    )


async def called(call: Call, params: CallToolRequestParams) -> CallToolResult:
    spec = TOOLS_BY_NAME.get(params.name)
    if spec is None:
        return tool_error(ErrorCode.not_found, f"no tool {params.name}")
    try:
        return CallToolResult(content=list(await spec.run(call, dict(params.arguments or {}))))
    except ToolFailure as exc:
        return tool_error(exc.code, exc.message)
    except Exception:  # a bug here must still answer the agent, never drop its session
        log.exception("tool %s failed", params.name)
        return tool_error(ErrorCode.internal_error, f"the {params.name} tool failed unexpectedly")


def build_server(client: ServiceClient, authorization_of: AuthorizationOf = header_of) -> Server:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=listed_tools())

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        public_url = public_url_of(ctx, client.public_url)
        call = Call(client, authorization_of(ctx), ctx.session.report_progress, public_url)
        return await called(call, params)

    return Server(
        "assetrag",
        version="1",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(api_url: str, api_key: str | None) -> None:
    """`assetrag mcp`: the tools over stdin/stdout, speaking to the API at `api_url`."""
    from mcp.server.stdio import stdio_server

    authorization = f"Bearer {api_key}" if api_key else None
    client = ServiceClient.over_network(api_url)
    server = build_server(client, lambda _ctx: authorization)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await client.aclose()
