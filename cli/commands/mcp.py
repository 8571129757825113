"""`assetrag mcp`: a stdio MCP server for desktop agents (Claude Desktop, editors), speaking to
a running API by URL and key (never to Redis or Milvus), so it serves a remote deployment as
well as `assetrag up` on this machine. The tools are the ones /mcp serves (api/mcp/).

Stdout carries the protocol: nothing else may print there.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import cli_of

commands = typer.Typer()


@commands.command("mcp")
def mcp(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="The API's base URL. [default: --api-url, ASSETRAG_API_URL, else "
            "http://127.0.0.1:8000]",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Bearer API key. [default: --api-key, ASSETRAG_API_KEY]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the assetrag tools (search, assets, ingest, generate, jobs) to an agent over
    stdio (the Model Context Protocol), calling the API at --url with --key."""
    import anyio

    from api.mcp.server import serve_stdio

    cli = cli_of(ctx)
    anyio.run(serve_stdio, url or cli.resolved_api_url(), key or cli.api_key)
