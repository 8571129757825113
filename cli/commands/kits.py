"""`assetrag kit create|show|list|delete` (brand kits, each change a new version) and
`assetrag brand-check` (a collection's assets scored against a kit, worst first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import EXIT_JOB_FAILED, CliContext, cli_of, validated
from cli.follow import follow_job, print_job_error
from shared.contract import (
    BrandCheckRequest,
    BrandCheckResult,
    JobKind,
    JobState,
    Kit,
    KitBody,
    KitCreate,
)

commands = typer.Typer()
kit_commands = typer.Typer(help="Brand kits: style rules every generation made with one follows.")
commands.add_typer(kit_commands, name="kit")


@kit_commands.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="lower-case letters, digits and dashes")],
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Where the references are.")
    ],
    ref: Annotated[list[str], typer.Option("--ref", help="A reference asset id (1-10).")],
    style: Annotated[
        str | None, typer.Option("--style", help="Text added to every prompt.")
    ] = None,
    palette: Annotated[
        str | None, typer.Option("--palette", help="Colours, e.g. #C8102E,#FFFFFF (up to 8).")
    ] = None,
    min_similarity: Annotated[
        float | None, typer.Option("--min-similarity", help="Least likeness to the references.")
    ] = None,
    max_palette_distance: Annotated[
        float | None,
        typer.Option("--max-palette-distance", help="Most CIEDE2000 distance from the palette."),
    ] = None,
    attempts: Annotated[
        int, typer.Option(min=1, max=5, help="Gemini calls an output may take to pass.")
    ] = 1,
    update: Annotated[
        bool, typer.Option("--update", help="Replace the kit's rules: a new version.")
    ] = False,
) -> None:
    """Make a brand kit (or, with --update, its next version)."""
    cli = cli_of(ctx)
    checks: dict[str, float] = {"attempts": attempts}
    checks |= {"min_similarity": min_similarity} if min_similarity is not None else {}
    checks |= (
        {"max_palette_distance": max_palette_distance} if max_palette_distance is not None else {}
    )
    rules = {
        "collection": collection,
        "references": list(ref),
        "palette": palette.split(",") if palette else [],
        "checks": checks,
        **({"style": style} if style else {}),
    }
    with cli.api_errors(), cli.client() as client:
        if update:
            kit = client.update_kit(name, validated(cli, lambda: KitBody.model_validate(rules)))
        else:
            body = validated(cli, lambda: KitCreate.model_validate({"name": name, **rules}))
            kit = client.create_kit(body)
    _print_kit(cli, kit)


@kit_commands.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (its latest version) or NAME@N")],
    versions: Annotated[bool, typer.Option("--versions", help="Every version.")] = False,
) -> None:
    """Show a kit (or every version of it)."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        kits = client.kit_versions(ref) if versions else [client.get_kit(ref)]
    for kit in kits:
        _print_kit(cli, kit)


@kit_commands.command("list")
def list_kits(ctx: typer.Context) -> None:
    """Every kit of yours, at its latest version."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        kits = client.list_kits()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("kit", "collection", "references", "palette", "checks"):
        table.add_column(column)
    for kit in kits:
        table.add_row(
            kit.ref,
            kit.collection,
            str(len(kit.references)),
            " ".join(kit.palette),
            _checks(kit),
        )
    cli.console.print(table)


@kit_commands.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a kit (its versions stay readable as NAME@N, for what was made with them)."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        client.delete_kit(name)
    cli.console.print(f"deleted kit {escape(name)}")


@commands.command("brand-check")
def brand_check(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to check.")],
    kit: Annotated[str, typer.Option("--kit", help="NAME or NAME@N.")],
    where: Annotated[
        str | None, typer.Option("--filter", help='Only these assets: JSON, {"field": value}.')
    ] = None,
    shown: Annotated[int, typer.Option("--show", min=1, help="Worst assets to print.")] = 20,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the results file (JSON Lines).")
    ] = None,
) -> None:
    """Score every asset of a collection against a brand kit, with a progress bar; print the
    worst first."""
    cli = cli_of(ctx)
    body = {
        "collection": collection,
        "kit": kit,
        **({"filter": json.loads(where)} if where else {}),
    }
    request = validated(cli, lambda: BrandCheckRequest.model_validate(body))
    with cli.api_errors(), cli.client() as client:
        job = follow_job(cli, client, client.submit(JobKind.brand_check, request))
        if job.state != JobState.completed or not isinstance(job.result, BrandCheckResult):
            print_job_error(cli, job)
            raise typer.Exit(EXIT_JOB_FAILED)
        if output is not None:
            lines = client.results(job.id)
            output.write_text(
                "".join(line.model_dump_json(exclude_none=True) + "\n" for line in lines)
            )
    result = job.result
    cli.console.print(
        f"{result.checked} asset(s) checked against {escape(result.kit)}: {result.passed} "
        f"passed, {result.failed} off-brand (job {job.id})"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("asset", "file", "similarity", "palette distance", "passed"):
        table.add_column(column)
    for score in result.worst[:shown]:
        distance = "-" if score.palette_distance is None else f"{score.palette_distance:.1f}"
        table.add_row(
            score.asset_id[:12],
            escape(score.filename),
            f"{score.similarity:.3f}",
            distance,
            "yes" if score.passed else "no",
        )
    cli.console.print(table)


def _checks(kit: Kit) -> str:
    checks = kit.checks
    said = [f"attempts {checks.attempts}"]
    if checks.min_similarity is not None:
        said.append(f"similarity >= {checks.min_similarity:g}")
    if checks.max_palette_distance is not None:
        said.append(f"palette <= {checks.max_palette_distance:g}")
    return ", ".join(said)


def _print_kit(cli: CliContext, kit: Kit) -> None:
    deleted = " (deleted)" if kit.deleted else ""
    cli.console.print(f"kit {escape(kit.ref)}{deleted}: collection {escape(kit.collection)}")
    cli.console.print(f"  references: {' '.join(a[:12] for a in kit.references)}")
    if kit.style:
        cli.console.print(f"  style: {escape(kit.style)}")
    if kit.palette:
        swatches = " ".join(f"[on {c}]  [/] {c}" for c in kit.palette)
        cli.console.print(f"  palette: {swatches}")
    cli.console.print(f"  checks: {_checks(kit)}")
