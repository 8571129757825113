"""`assetrag collections`, `reindex`, `versions` and `drop-version`: the collections, and
rebuilding one into a new version behind its alias."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import EXIT_JOB_FAILED, cli_of, validated
from cli.follow import finish, print_job_error, print_summary
from shared import contract
from shared.contract import (
    CollectionCreate,
    CollectionInfo,
    JobState,
    ReindexRequest,
    ReindexResult,
)
from shared.contract.meta import ServiceMeta

commands = typer.Typer()


@commands.command()
def collections(ctx: typer.Context) -> None:
    """List collections: name, model, dimension and size."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        found = client.list_collections()
    if not found:
        cli.console.print("no collections")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "model", "dimension", "count", "version", "keyword search"):
        table.add_column(column)
    for info in found:
        count = "-" if info.count is None else str(info.count)
        table.add_row(
            escape(info.name),
            escape(info.model),
            str(info.dimension),
            count,
            str(info.version),
            "yes" if info.keyword_search else "no",
        )
    cli.console.print(table)


@commands.command("create-collection")
def create_collection(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new collection's name.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model of its vectors (`assetrag models` lists them; default: the service's)."
        ),
    ] = None,
) -> None:
    """Create an empty collection on a model of either family (OpenAI CLIP, open_clip)."""
    cli = cli_of(ctx)
    body = validated(cli, lambda: CollectionCreate(name=name, model=model))
    with cli.api_errors(), cli.client() as client:
        # the client's generic call: its module is being edited for kits meanwhile
        info = client._model(
            CollectionInfo,
            "POST",
            contract.COLLECTIONS_PATH,
            json=body.model_dump(mode="json", exclude_none=True),
        )
    cli.console.print(f"{escape(info.name)}: {escape(info.model)}, {info.dimension}-d")


@commands.command("models")
def models(ctx: typer.Context) -> None:
    """The models a collection may be created on or re-indexed to."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        meta = client._model(ServiceMeta, "GET", contract.META_PATH)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "dimension", "languages", "note", "default"):
        table.add_column(column)
    for m in meta.model_catalog:
        dimension = "?" if m.dimension is None else str(m.dimension)
        table.add_row(
            escape(m.name), dimension, escape(m.languages), escape(m.note), "*" if m.default else ""
        )
    cli.console.print(table)


@commands.command()
def reindex(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to rebuild.")],
    model: Annotated[
        str | None,
        typer.Option(help="CLIP model of the new version (default: the collection's own)."),
    ] = None,
    drop_previous: Annotated[
        bool, typer.Option("--drop-previous", help="Drop the version it replaces once swapped.")
    ] = False,
) -> None:
    """Rebuild a collection into a new version (another model, or the same one to gain
    keyword search); searches keep answering from the current version until the swap."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        chosen = model or client.get_collection(collection).model
        request = validated(cli, lambda: ReindexRequest(model=chosen, drop_previous=drop_previous))
        job = finish(cli, client, client.reindex(collection, request), "reindex")
    if not isinstance(job.result, ReindexResult) or job.state != JobState.completed:
        print_job_error(cli, job)
        raise typer.Exit(EXIT_JOB_FAILED)
    result = job.result
    dropped = f"; version {result.from_version} dropped" if result.previous_dropped else ""
    cli.console.print(
        f"{escape(result.collection)}: version {result.version} ({escape(result.model)}, "
        f"{result.dimension}-d, {job.progress.succeeded} assets) answers now, "
        f"was version {result.from_version}{dropped} (job {job.id})"
    )
    if job.progress.failed:
        print_summary(cli, job)


@commands.command()
def versions(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to show.")],
) -> None:
    """List a collection's versions; the current one answers searches."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        found = client.versions(collection)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("version", "model", "dimension", "count", "keyword search", "current"):
        table.add_column(column)
    for v in found:
        table.add_row(
            str(v.version),
            escape(v.model),
            str(v.dimension),
            str(v.count),
            "yes" if v.keyword_search else "no",
            "*" if v.current else "",
        )
    cli.console.print(table)


@commands.command("drop-version")
def drop_version(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection.")],
    version: Annotated[int, typer.Argument(min=1, help="A version that does not answer.")],
) -> None:
    """Drop a collection version that no longer answers."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        client.drop_version(collection, version)
    cli.console.print(f"dropped version {version} of {escape(collection)}")
