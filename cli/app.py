"""The ``assetrag`` console script: the typer app, its global options, and the command groups
of `cli/commands/` mounted in the order `assetrag --help` lists them.

The app's callback puts a `CliContext` (`cli/context.py`: the options, the consoles, the API
client's factory) on the typer context, where every command finds it. Server-side commands
(``up``, ``api``, ``worker``) import ``cli.stack`` lazily so that ``assetrag --help`` and the
client commands start fast.

Exit codes: 0 success; 1 the job failed, was cancelled or stored nothing (or nothing to do);
2 an API error (``error <code>: <message>``), an unreachable API, or bad usage;
130 interrupted while following a job (the job keeps running).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from cli.commands import (
    collections,
    duplicates,
    generate,
    ingest,
    jobs,
    kits,
    mcp,
    models,
    search,
    stack,
)
from cli.context import CliContext

__all__ = ["CliContext", "app"]

app = typer.Typer(
    name="assetrag",
    help="Multimodal RAG over a media asset library: embed, search, generate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="API base URL. [default: ASSETRAG_API_URL, else http://127.0.0.1:8000]",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="ASSETRAG_API_KEY", help="Bearer API key.", show_default=False
        ),
    ] = None,
) -> None:
    """assetrag: an async job service that embeds images with CLIP into Milvus, finds them
    from text or an example image, and generates new images from them with Gemini."""
    # A CliContext handed in (CliRunner's obj=) keeps its consoles and client factory; the
    # options given on the command line go into it.
    given = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    ctx.obj = replace(given, api_url=api_url or given.api_url, api_key=api_key or given.api_key)


for group in (stack, ingest, search, generate, jobs, duplicates, kits, collections, models, mcp):
    app.add_typer(group.commands)
