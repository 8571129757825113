"""`assetrag ingest`: images (files or folders) into a collection as one embed job, uploaded
with a progress bar or read by the server itself (`--server-paths`), and followed to its end
with `--wait`."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.client import ApiError, AssetragClient, chunk_paths
from cli.context import EXIT_JOB_FAILED, CliContext, cli_of
from cli.follow import follow_job, interruptible, print_summary
from cli.paths import expand_paths
from shared.contract import DirectorySpec, EmbedItem, EmbedRequest, JobKind, JobState, Upload

commands = typer.Typer()


def _refused_alone(exc: ApiError) -> bool:
    """A refusal of the file itself (worth retrying its chunk-mates one by one), not of the
    caller or the server."""
    return exc.status in (413, 415, 422)


def _upload_with_progress(
    cli: CliContext, client: AssetragClient, files: list[Path]
) -> tuple[list[Upload], list[tuple[Path, ApiError]]]:
    """Upload in chunks with a progress bar; a chunk the server refuses is retried file by
    file so that one bad file costs only itself. Returns (uploads, per-file errors)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    sizes = {p: _size(p) for p in files}
    uploads: list[Upload] = []
    failures: list[tuple[Path, ApiError]] = []
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[files]}"),
        console=cli.err,
    ) as progress:
        task = progress.add_task("upload", total=sum(sizes.values()), files=f"0/{len(files)}")
        done = 0
        for chunk in chunk_paths(files):
            try:
                uploads.extend(client.upload(chunk))
            except ApiError as exc:
                if not _refused_alone(exc):
                    raise
                for path in chunk:
                    try:
                        uploads.extend(client.upload([path]))
                    except ApiError as one:
                        if not _refused_alone(one):
                            raise
                        failures.append((path, one))
            done += len(chunk)
            progress.update(
                task, advance=sum(sizes[p] for p in chunk), files=f"{done}/{len(files)}"
            )
    return uploads, failures


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _server_path(path: Path) -> str:
    p = path.expanduser()
    return str(p.absolute()) if p.exists() else str(p)


def _server_request(
    cli: CliContext, collection: str, paths: list[Path], recursive: bool, pattern: str | None
) -> EmbedRequest:
    """The embed request for ``--server-paths``: one folder goes as ``directory`` (the server
    walks it); files are ``path`` items. Extra folders, when this machine can see them, are
    expanded here into ``path`` items."""
    folders = [p for p in paths if p.is_dir() or str(p).endswith(("/", "\\"))]
    files = [p for p in paths if p not in folders]
    items = [EmbedItem(path=_server_path(p)) for p in files]
    directory = None
    if folders:
        first, rest = folders[0], folders[1:]
        directory = DirectorySpec(
            path=_server_path(first), recursive=recursive, pattern=pattern or "*"
        )
        for folder in rest:
            if not folder.is_dir():
                cli.fail(
                    f"error usage: only one server-side folder per job ({folder} is not "
                    "visible here to expand)"
                )
            items += [
                EmbedItem(path=_server_path(p)) for p in expand_paths([folder], recursive, pattern)
            ]
    return EmbedRequest(collection=collection, items=items, directory=directory)


def _upload_request(
    cli: CliContext,
    client: AssetragClient,
    collection: str,
    paths: list[Path],
    recursive: bool,
    pattern: str | None,
) -> EmbedRequest:
    """The embed request for files uploaded from here; a file the API refuses is skipped and
    said so."""
    try:
        files = expand_paths(paths, recursive, pattern)
    except FileNotFoundError as exc:
        cli.fail(f"error file_not_found: no such file or folder: {exc}")
    if not files:
        cli.fail("no images found", EXIT_JOB_FAILED)
    uploads, failures = _upload_with_progress(cli, client, files)
    for path, problem in failures:
        cli.err.print(
            f"[yellow]skipped {escape(str(path))}: {escape(problem.code)}: "
            f"{escape(problem.message)}[/yellow]"
        )
    if not uploads:
        cli.fail("nothing uploaded", EXIT_JOB_FAILED)
    items = [EmbedItem(upload_id=u.upload_id) for u in uploads]
    return EmbedRequest(collection=collection, items=items)


@commands.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Target collection.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the job to its end.")
    ] = False,
    server_paths: Annotated[
        bool,
        typer.Option(
            "--server-paths",
            help="Let the server read the paths (from ASSETRAG_LIBRARY_ROOTS) instead of "
            "uploading them.",
        ),
    ] = False,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Descend into sub-folders.")
    ] = True,
    pattern: Annotated[
        str | None, typer.Option(help="Only file names matching this glob, e.g. '*.png'.")
    ] = None,
) -> None:
    """Upload images (files or folders) into a collection as one embed job."""
    cli = cli_of(ctx)
    with cli.api_errors(), cli.client() as client:
        if server_paths:
            request = _server_request(cli, collection, paths, recursive, pattern)
            count = f"{len(request.items)} file(s)" + (
                f" + folder {request.directory.path}" if request.directory else ""
            )
        else:
            request = _upload_request(cli, client, collection, paths, recursive, pattern)
            count = f"{len(request.items)} item(s)"
        job = client.submit(JobKind.embed, request, idempotency_key=str(uuid.uuid4()))
        cli.console.print(f"embed job {job.id} submitted ({count}) into collection {collection}")
        if not wait:
            cli.console.print(f"follow it with `assetrag jobs {job.id}`")
            return
        with interruptible(cli, job.id):
            final = follow_job(cli, client, job)
        print_summary(cli, final)
    if final.state != JobState.completed or final.progress.succeeded == 0:
        raise typer.Exit(EXIT_JOB_FAILED)
