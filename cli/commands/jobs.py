"""`assetrag jobs`, `results` and `cancel`: the job list, one job in full, a finished job's
per-item results, and stopping a job."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import cli_of
from cli.follow import fmt_duration
from shared.contract import JobKind, JobState, JobSummary

commands = typer.Typer()


@commands.command()
def results(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A finished job.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """A finished job's results as JSON Lines: one line per item (index, status, result or
    error)."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        text = "".join(
            line.model_dump_json(exclude_none=True) + "\n" for line in client.results(job_id)
        )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        cli.err.print(f"wrote {escape(str(output))}")


def _fmt_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).astimezone().strftime("%m-%d %H:%M")


def _fmt_progress(job: JobSummary) -> str:
    p = job.progress
    text = f"{p.succeeded + p.failed}/{p.total}"
    return f"{text} ({p.failed} failed)" if p.failed else text


@commands.command()
def jobs(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="Show this job in full.")] = None,
    kind: Annotated[JobKind | None, typer.Option(help="Only jobs of this kind.")] = None,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Page on from this cursor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List recent jobs, newest first, or show one job."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        if job_id:
            typer.echo(client.get_job(job_id).model_dump_json(indent=2))
            return
        page = client.list_jobs(kind=kind, state=state, limit=limit, cursor=cursor)
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    if not page.data:
        cli.console.print("no jobs")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "kind", "state", "progress", "created", "duration"):
        table.add_column(column, no_wrap=column != "progress")
    for job in page.data:
        table.add_row(
            escape(job.id),
            job.kind.value,
            job.state.value,
            _fmt_progress(job),
            _fmt_time(job.created_at),
            fmt_duration(job),
        )
    cli.console.print(table)
    if page.next_cursor:
        cli.console.print(f"more: --cursor {escape(page.next_cursor)}")


@commands.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to stop.")],
) -> None:
    """Cancel a queued or running job (items already stored stay)."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        job = client.cancel_job(job_id)
    cli.console.print(f"job {job.id} {job.state.value}")
