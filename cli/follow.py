"""Following a submitted job to its end from a terminal, and saying how it ended: the
progress bar, the quiet spinner, Ctrl-C (the job keeps running), the summary line and its
item errors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import typer
from rich.markup import escape
from rich.table import Table

from cli.client import AssetragClient
from cli.context import EXIT_INTERRUPTED, CliContext
from shared.contract import Job, JobState, JobSummary

# How long a submit asks the API to hold the answer until the job finishes.
SUBMIT_WAIT_S = 30.0


@contextlib.contextmanager
def interruptible(cli: CliContext, job_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        cli.err.print(
            f"\n[yellow]stopped following; job {job_id} keeps running "
            f"(`assetrag jobs {job_id}`, `assetrag cancel {job_id}`)[/yellow]"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def finish(cli: CliContext, client: AssetragClient, job: Job, label: str) -> Job:
    """Wait (quietly, with a spinner) for a submitted job that did not finish in time."""
    if job.finished:
        return job
    with interruptible(cli, job.id), cli.err.status(f"{label} job {job.id} {job.state.value}…"):
        return client.wait_job(job.id)


def follow_job(cli: CliContext, client: AssetragClient, job: Job) -> Job:
    """Follow a job to its end with a live progress bar fed by its events."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- items/s" if speed is None else f"{speed:.1f} items/s")

    if job.finished:
        return job
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=cli.err,
    ) as progress:
        task = progress.add_task(job.state.value, total=None, failed=0)

        def update(current: Job) -> None:
            done = current.progress.succeeded + current.progress.failed
            # an embed job's total is 0 until its folder or item list has been planned
            total = current.progress.total or (done if current.finished else None)
            progress.update(
                task,
                description=current.state.value,
                total=total,
                completed=done,
                failed=current.progress.failed,
            )

        update(job)
        final = client.wait_job(job.id, on_progress=update)
        update(final)
    return final


def fmt_duration(job: JobSummary) -> str:
    start = job.started_at or job.created_at
    end = job.finished_at or (None if job.finished else time.time())
    if end is None:
        return "-"
    seconds = max(0.0, end - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def print_job_error(cli: CliContext, job: JobSummary) -> None:
    if job.error is not None:
        cli.err.print(f"[red]error {escape(job.error.code)}: {escape(job.error.message)}[/red]")
    elif job.state == JobState.cancelled:
        cli.err.print("[yellow]job cancelled[/yellow]")


def print_summary(cli: CliContext, job: Job) -> None:
    p = job.progress
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(job.state, "white")
    cli.console.print(
        f"job {job.id} [{colour}]{job.state.value}[/{colour}]: {p.succeeded} succeeded, "
        f"{p.failed} failed, {p.total} total in {fmt_duration(job)}"
    )
    if job.errors:
        table = Table(title=f"{len(job.errors)} item error(s)", title_justify="left")
        for column in ("index", "source", "code", "message"):
            table.add_column(column, overflow="fold")
        for item in job.errors:
            table.add_row(
                str(item.index), escape(item.source), escape(item.code), escape(item.message)
            )
        cli.console.print(table)
    print_job_error(cli, job)
