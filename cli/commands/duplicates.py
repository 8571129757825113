"""`assetrag duplicates`: clusters of near-duplicate assets in a collection (resized,
re-encoded, cropped copies), as a table or as JSON Lines."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import EXIT_JOB_FAILED, CliContext, cli_of, validated
from cli.follow import finish, print_job_error
from shared.contract import (
    DEFAULT_DUPLICATE_THRESHOLD,
    Cluster,
    DuplicatesRequest,
    DuplicatesResult,
    JobKind,
    JobState,
)

commands = typer.Typer()


@commands.command()
def duplicates(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to scan.")],
    threshold: Annotated[
        float,
        typer.Option(
            min=0.5, max=1.0, help="Least cosine similarity at which two assets are duplicates."
        ),
    ] = DEFAULT_DUPLICATE_THRESHOLD,
    shown: Annotated[int, typer.Option("--show", min=1, help="Clusters to print.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every cluster as JSON Lines.")
    ] = False,
) -> None:
    """Find clusters of near-duplicate assets (resized, re-encoded, cropped copies)."""
    cli = cli_of(ctx)
    request = validated(cli, lambda: DuplicatesRequest(collection=collection, threshold=threshold))
    with cli.api_errors(), cli.client() as client:
        job = finish(cli, client, client.submit(JobKind.duplicates, request), "duplicates")
        if not isinstance(job.result, DuplicatesResult) or job.state != JobState.completed:
            print_job_error(cli, job)
            raise typer.Exit(EXIT_JOB_FAILED)
        if as_json:
            for cluster in client.clusters(job.id):
                typer.echo(cluster.model_dump_json())
            return
    result = job.result
    cli.console.print(
        f"{result.cluster_count} cluster(s), {result.duplicate_count} of {result.scanned} "
        f"assets, at similarity >= {result.threshold:g} (job {job.id})"
    )
    if result.clusters:
        _print_clusters(cli, result.clusters[:shown])
    if result.cluster_count > shown:
        cli.console.print(f"more: assetrag duplicates -c {escape(collection)} --json")


def _print_clusters(cli: CliContext, clusters: list[Cluster]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "size", "lowest similarity", "assets"):
        table.add_column(column)
    for rank, cluster in enumerate(clusters, 1):
        ids = " ".join(a[:12] for a in cluster.asset_ids[:6])
        more = f" (+{len(cluster.asset_ids) - 6})" if len(cluster.asset_ids) > 6 else ""
        table.add_row(
            str(rank), str(len(cluster.asset_ids)), f"{cluster.min_similarity:.4f}", ids + more
        )
    cli.console.print(table)
