"""`assetrag search`: a collection searched by text (vector, keyword or hybrid) or by an
example image; the hits as a table or JSON, and `--sheet` a contact sheet of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from cli.client import ApiError, AssetragClient
from cli.context import EXIT_JOB_FAILED, CliContext, cli_of, validated
from cli.follow import SUBMIT_WAIT_S, finish, print_job_error
from shared import contract
from shared.contract import (
    FilterValue,
    Hit,
    JobKind,
    JobState,
    SearchMode,
    SearchQuery,
    SearchRequest,
    SearchResult,
)

commands = typer.Typer()


def _parse_filters(cli: CliContext, values: list[str] | None) -> dict[str, FilterValue]:
    """``key=value`` filters a string field; ``key:=value`` takes a JSON literal (a number or
    true/false) for typed metadata."""
    out: dict[str, FilterValue] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key.strip(":").strip():
            cli.fail(f"error usage: --filter wants key=value or key:=json, got {value!r}")
        if key.endswith(":"):
            try:
                parsed = json.loads(val)
            except ValueError:
                parsed = None
            if not isinstance(parsed, bool | int | float):
                cli.fail(f"error usage: --filter {key}={val}: not a JSON number or boolean")
            out[key[:-1].strip()] = parsed
        else:
            out[key.strip()] = val
    return out


def _metadata_text(metadata: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in metadata.items())


@commands.command()
def search(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to search.")],
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image", exists=True, dir_okay=False, help="Find images like this one instead."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=contract.TOP_K_MAX)] = 10,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Metadata filter key=value (a string), or key:=123 / key:=true for typed "
            "values (repeatable, all must match).",
        ),
    ] = None,
    min_score: Annotated[float | None, typer.Option("--min-score")] = None,
    mode: Annotated[
        SearchMode,
        typer.Option(
            "--mode",
            help="Text queries: vector (CLIP), keyword (BM25 over filenames and metadata: "
            "SKUs, names) or hybrid (both, fused by rank).",
        ),
    ] = SearchMode.vector,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Write a contact sheet of the hits here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON.")] = False,
) -> None:
    """Search a collection by text or by an example image."""
    cli = cli_of(ctx)
    if (text is None) == (image is None):
        cli.fail("error usage: give either a TEXT query or --image FILE (one of them)")
    if image is not None and mode != SearchMode.vector:
        cli.fail("error usage: --mode keyword and hybrid take a TEXT query, not --image")
    filters = _parse_filters(cli, filter_)
    with cli.api_errors(), cli.client() as client:
        if image is not None:
            query = SearchQuery(upload_id=client.upload([image])[0].upload_id)
        elif mode == SearchMode.vector:
            query = validated(cli, lambda: SearchQuery(text=text))
        else:
            query = validated(cli, lambda: SearchQuery(text=text, mode=mode))
        request = validated(
            cli,
            lambda: SearchRequest(
                collection=collection,
                queries=[query],
                top_k=top_k,
                filter=filters or None,
                min_score=min_score,
            ),
        )
        submitted = client.submit(JobKind.search, request, wait=SUBMIT_WAIT_S)
        job = finish(cli, client, submitted, "search")
        if not isinstance(job.result, SearchResult) or job.state != JobState.completed:
            print_job_error(cli, job)
            raise typer.Exit(EXIT_JOB_FAILED)
        if job.errors:
            cli.fail(f"error {job.errors[0].code}: {job.errors[0].message}", EXIT_JOB_FAILED)
        hits = job.result.results[0]
        if as_json:
            typer.echo(json.dumps([hit.model_dump(mode="json") for hit in hits], indent=2))
        elif not hits:
            cli.console.print("no results")
        else:
            _print_hits(cli, hits, collection)
        if sheet is not None:
            if not hits:
                cli.err.print("[yellow]no hits: no contact sheet written[/yellow]")
                return
            _write_sheet(cli, client, hits, sheet)
            (cli.err if as_json else cli.console).print(f"contact sheet: {sheet}")


def _print_hits(cli: CliContext, hits: list[Hit], collection: str) -> None:
    table = Table(title=f"{len(hits)} hit(s) in {collection}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("found by")
    table.add_column("asset")
    table.add_column("filename", overflow="fold")
    table.add_column("source", overflow="fold")
    table.add_column("metadata", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(
            str(rank),
            f"{hit.score:.3f}",
            "+".join(hit.found_by),
            escape(hit.asset_id[:12]),
            escape(hit.filename),
            escape(hit.source),
            escape(_metadata_text(hit.metadata)),
        )
    cli.console.print(table)


def _write_sheet(cli: CliContext, client: AssetragClient, hits: list[Hit], out: Path) -> None:
    from cli.sheet import caption, contact_sheet

    tiles: list[tuple[bytes, str]] = []
    for rank, hit in enumerate(hits, 1):
        data = b""
        try:
            data = client.content(hit.content_url)
        except (ApiError, httpx.HTTPError) as exc:
            cli.err.print(f"[yellow]could not fetch hit #{rank}: {escape(str(exc))}[/yellow]")
        tiles.append((data, caption(rank, hit.score, hit.filename or hit.asset_id[:12])))
    image = contact_sheet(tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
