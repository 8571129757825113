"""The MCP SDK's own client against the service: over streamable HTTP at /mcp, or against
`assetrag mcp` started as a subprocess over stdio; and an API process with keys on, sharing
a running stack's Redis, Milvus and workers."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from cli.stack import Stack, free_port
from tests.support.stack import OUTPUT, ROOT, RunningStack


@contextmanager
def keyed_api(stack: RunningStack, keys: str, name: str, **env: str) -> Iterator[str]:
    """A second API process with ASSETRAG_API_KEYS set; its URL."""
    port = free_port()
    settings = {**stack.stack.env, "ASSETRAG_API_KEYS": keys, **env}
    api = Stack(port=port, env=settings, workers=(), log_dir=OUTPUT / "stack-logs" / name)
    api.start()
    try:
        api.wait_ready(60)
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    """`assetrag mcp --url URL --key KEY`, as a desktop agent starts it."""
    args = ["-m", "cli", "mcp", "--url", url, *(["--key", key] if key else [])]
    server = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT))
    with open(OUTPUT / "mcp-stdio.log", "a") as errlog:
        async with (
            stdio_client(server, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def answer(result: CallToolResult) -> Any:
    """The JSON a tool answered (its first content)."""
    first = result.content[0]
    assert isinstance(first, TextContent), first
    return json.loads(first.text)


def error_code(result: CallToolResult) -> str | None:
    return answer(result)["error"]["code"] if result.is_error else None


def images(result: CallToolResult) -> list[Image.Image]:
    """The image contents of a tool's answer, decoded."""
    return [
        Image.open(io.BytesIO(base64.b64decode(c.data)))
        for c in result.content
        if isinstance(c, ImageContent)
    ]
