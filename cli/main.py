"""The ``assetrag`` console script: run the stack, and drive the API from a terminal.

Server-side commands (``up``, ``api``, ``worker``) import ``cli.stack`` lazily so that
``assetrag --help`` and the client commands start fast.

Exit codes: 0 success; 1 the job failed, was cancelled or stored nothing (or nothing to do);
2 an API error (``error <code>: <message>``), an unreachable API, or bad usage;
130 interrupted while following a job (the job keeps running).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.client import ApiError, AssetragClient, chunk_paths
from shared import contract
from shared.contract import (
    DEFAULT_DUPLICATE_THRESHOLD,
    MAX_REFERENCES,
    AssetReferences,
    Cluster,
    DirectorySpec,
    DuplicatesRequest,
    DuplicatesResult,
    EmbedItem,
    EmbedRequest,
    FilterValue,
    GenerateRequest,
    GenerateResult,
    Hit,
    Job,
    JobKind,
    JobState,
    JobSummary,
    ReindexRequest,
    ReindexResult,
    SearchMode,
    SearchQuery,
    SearchRequest,
    SearchResult,
    Upload,
)
from shared.errors import describe_invalid

M = TypeVar("M", bound=BaseModel)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
SUBMIT_WAIT_S = 30.0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="assetrag",
    help="Multimodal RAG over a media asset library: embed, search, generate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


# -- client plumbing ----------------------------------------------------------------------


def make_client(api_url: str, api_key: str | None) -> AssetragClient:
    """Build the API client (tests replace this to point the commands at a mock server)."""
    return AssetragClient(api_url, api_key=api_key)


def _api_url(ctx: typer.Context) -> str:
    obj = ctx.obj or {}
    url = obj.get("api_url")
    if url:
        return str(url)
    from shared.settings import get_settings

    return get_settings().api_url


def _client(ctx: typer.Context) -> AssetragClient:
    obj = ctx.obj or {}
    return make_client(_api_url(ctx), obj.get("api_key"))


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code)


@contextlib.contextmanager
def _handle_errors(ctx: typer.Context) -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        _fail(f"error {exc.code}: {exc.message}")
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        _fail(
            f"error unreachable: cannot reach the assetrag API at {_api_url(ctx)} ({exc}).\n"
            "Start the stack with `assetrag up` (or set ASSETRAG_API_URL / --api-url)."
        )
    except httpx.TransportError as exc:
        _fail(f"error network: {type(exc).__name__}: {exc}")


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
    ctx.obj = {"api_url": api_url, "api_key": api_key}


# -- stack commands -------------------------------------------------------------------------


def _stack() -> Any:
    """``cli.stack``, imported only when a server-side command runs."""
    import importlib

    return importlib.import_module("cli.stack")


def _exit_with(code: object) -> None:
    if isinstance(code, bool) or not isinstance(code, int):
        code = 0
    raise typer.Exit(code)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address the API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run the whole stack on this machine: API, one worker per queue, Milvus Lite, Redis."""
    _exit_with(_stack().run_stack(host=host, port=port))


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address the API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run only the HTTP API."""
    _exit_with(_stack().run_api(host=host, port=port))


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: embed, query, generate, default.")
    ] = "embed,query,generate,default",
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Worker processes/threads.")
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="Celery pool (prefork, threads, solo, ...).")
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="The one GPU this worker uses (an index or a GPU-/MIG- UUID): sets "
            "CUDA_VISIBLE_DEVICES for it.",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (as ASSETRAG_METRICS_PORT; 0: none).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one Celery worker consuming the given queues."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        _fail("error usage: --queues needs at least one queue")
    stack = _stack()
    if gpu is not None and not stack.GPU_RE.fullmatch(gpu):
        _fail(f"error usage: --gpu takes a GPU index (0, 1, ...) or a GPU-/MIG- UUID, not {gpu!r}")
    _exit_with(
        stack.run_worker(
            queues=names, concurrency=concurrency, pool=pool, gpu=gpu, metrics_port=metrics_port
        )
    )


# -- ingest ---------------------------------------------------------------------------------


def _matches(path: Path, pattern: str | None) -> bool:
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    return pattern is None or fnmatch.fnmatchcase(path.name.lower(), pattern.lower())


def expand_paths(
    paths: list[Path], recursive: bool = True, pattern: str | None = None
) -> list[Path]:
    """Files named explicitly, plus the images under each folder (sorted, no duplicates).

    Raises FileNotFoundError for a path that does not exist.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for path in paths:
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            for p in sorted(found):
                if p.is_file() and _matches(p, pattern):
                    add(p)
        elif path.is_file():
            add(path)
        else:
            raise FileNotFoundError(str(path))
    return out


def _refused_alone(exc: ApiError) -> bool:
    """A refusal of the file itself (worth retrying its chunk-mates one by one), not of the
    caller or the server."""
    return exc.status in (413, 415, 422)


def _upload_with_progress(
    client: AssetragClient, files: list[Path]
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
        console=err,
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
    collection: str, paths: list[Path], recursive: bool, pattern: str | None
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
                _fail(
                    f"error usage: only one server-side folder per job ({folder} is not "
                    "visible here to expand)"
                )
            items += [
                EmbedItem(path=_server_path(p)) for p in expand_paths([folder], recursive, pattern)
            ]
    return EmbedRequest(collection=collection, items=items, directory=directory)


def _follow_job(client: AssetragClient, job: Job) -> Job:
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
        console=err,
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


def _fmt_duration(job: JobSummary) -> str:
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


def _print_job_error(job: JobSummary) -> None:
    if job.error is not None:
        err.print(f"[red]error {escape(job.error.code)}: {escape(job.error.message)}[/red]")
    elif job.state == JobState.cancelled:
        err.print("[yellow]job cancelled[/yellow]")


def _print_summary(job: Job) -> None:
    p = job.progress
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(job.state, "white")
    console.print(
        f"job {job.id} [{colour}]{job.state.value}[/{colour}]: {p.succeeded} succeeded, "
        f"{p.failed} failed, {p.total} total in {_fmt_duration(job)}"
    )
    if job.errors:
        table = Table(title=f"{len(job.errors)} item error(s)", title_justify="left")
        for column in ("index", "source", "code", "message"):
            table.add_column(column, overflow="fold")
        for item in job.errors:
            table.add_row(
                str(item.index), escape(item.source), escape(item.code), escape(item.message)
            )
        console.print(table)
    _print_job_error(job)


@contextlib.contextmanager
def _interruptible(job_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        err.print(
            f"\n[yellow]stopped following; job {job_id} keeps running "
            f"(`assetrag jobs {job_id}`, `assetrag cancel {job_id}`)[/yellow]"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command()
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
    with _handle_errors(ctx), _client(ctx) as client:
        if server_paths:
            request = _server_request(collection, paths, recursive, pattern)
            count = f"{len(request.items)} file(s)" + (
                f" + folder {request.directory.path}" if request.directory else ""
            )
        else:
            try:
                files = expand_paths(paths, recursive, pattern)
            except FileNotFoundError as exc:
                _fail(f"error file_not_found: no such file or folder: {exc}")
            if not files:
                _fail("no images found", EXIT_JOB_FAILED)
            uploads, failures = _upload_with_progress(client, files)
            for path, problem in failures:
                err.print(
                    f"[yellow]skipped {escape(str(path))}: {escape(problem.code)}: "
                    f"{escape(problem.message)}[/yellow]"
                )
            if not uploads:
                _fail("nothing uploaded", EXIT_JOB_FAILED)
            items = [EmbedItem(upload_id=u.upload_id) for u in uploads]
            request = EmbedRequest(collection=collection, items=items)
            count = f"{len(items)} item(s)"
        job = client.submit(JobKind.embed, request, idempotency_key=str(uuid.uuid4()))
        console.print(f"embed job {job.id} submitted ({count}) into collection {collection}")
        if not wait:
            console.print(f"follow it with `assetrag jobs {job.id}`")
            return
        with _interruptible(job.id):
            final = _follow_job(client, job)
        _print_summary(final)
    if final.state != JobState.completed or final.progress.succeeded == 0:
        raise typer.Exit(EXIT_JOB_FAILED)


# -- search ---------------------------------------------------------------------------------


def _parse_filters(values: list[str] | None) -> dict[str, FilterValue]:
    """``key=value`` filters a string field; ``key:=value`` takes a JSON literal (a number or
    true/false) for typed metadata."""
    out: dict[str, FilterValue] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key.strip(":").strip():
            _fail(f"error usage: --filter wants key=value or key:=json, got {value!r}")
        if key.endswith(":"):
            try:
                parsed = json.loads(val)
            except ValueError:
                parsed = None
            if not isinstance(parsed, bool | int | float):
                _fail(f"error usage: --filter {key}={val}: not a JSON number or boolean")
            out[key[:-1].strip()] = parsed
        else:
            out[key.strip()] = val
    return out


def _finish(client: AssetragClient, job: Job, label: str) -> Job:
    """Wait (quietly, with a spinner) for a submitted job that did not finish in time."""
    if job.finished:
        return job
    with _interruptible(job.id), err.status(f"{label} job {job.id} {job.state.value}…"):
        return client.wait_job(job.id)


def _metadata_text(metadata: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in metadata.items())


def _validated(build: Callable[[], M]) -> M:
    """A request model built from command-line values; a refusal is a usage error."""
    try:
        return build()
    except ValidationError as exc:
        _fail(f"error usage: {describe_invalid(exc.errors())}")


@app.command()
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
    if (text is None) == (image is None):
        _fail("error usage: give either a TEXT query or --image FILE (one of them)")
    if image is not None and mode != SearchMode.vector:
        _fail("error usage: --mode keyword and hybrid take a TEXT query, not --image")
    filters = _parse_filters(filter_)
    with _handle_errors(ctx), _client(ctx) as client:
        if image is not None:
            query = SearchQuery(upload_id=client.upload([image])[0].upload_id)
        elif mode == SearchMode.vector:
            query = _validated(lambda: SearchQuery(text=text))
        else:
            query = _validated(lambda: SearchQuery(text=text, mode=mode))
        request = _validated(
            lambda: SearchRequest(
                collection=collection,
                queries=[query],
                top_k=top_k,
                filter=filters or None,
                min_score=min_score,
            )
        )
        job = _finish(client, client.submit(JobKind.search, request, wait=SUBMIT_WAIT_S), "search")
        if not isinstance(job.result, SearchResult) or job.state != JobState.completed:
            _print_job_error(job)
            raise typer.Exit(EXIT_JOB_FAILED)
        if job.errors:
            _fail(f"error {job.errors[0].code}: {job.errors[0].message}", EXIT_JOB_FAILED)
        hits = job.result.results[0]
        if as_json:
            typer.echo(json.dumps([hit.model_dump(mode="json") for hit in hits], indent=2))
        elif not hits:
            console.print("no results")
        else:
            _print_hits(hits, collection)
        if sheet is not None:
            if not hits:
                err.print("[yellow]no hits: no contact sheet written[/yellow]")
                return
            _write_sheet(client, hits, sheet)
            (err if as_json else console).print(f"contact sheet: {sheet}")


def _print_hits(hits: list[Hit], collection: str) -> None:
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
    console.print(table)


def _write_sheet(client: AssetragClient, hits: list[Hit], out: Path) -> None:
    from cli.sheet import caption, contact_sheet

    tiles: list[tuple[bytes, str]] = []
    for rank, hit in enumerate(hits, 1):
        data = b""
        try:
            data = client.content(hit.content_url)
        except (ApiError, httpx.HTTPError) as exc:
            err.print(f"[yellow]could not fetch hit #{rank}: {escape(str(exc))}[/yellow]")
        tiles.append((data, caption(rank, hit.score, hit.filename or hit.asset_id[:12])))
    image = contact_sheet(tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


# -- generate -------------------------------------------------------------------------------


def _output_paths(out: Path, count: int) -> list[Path]:
    if count <= 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]


_MIME_SUFFIX = {
    "image/png": {".png"},
    "image/jpeg": {".jpg", ".jpeg"},
    "image/webp": {".webp"},
    "image/gif": {".gif"},
}


def _save_image(data: bytes, mime_type: str, path: Path) -> None:
    """Write the bytes, re-encoding when the file's suffix asks for another format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if not suffix or suffix in _MIME_SUFFIX.get(mime_type, {suffix}):
        path.write_bytes(data)
        return
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        img: Image.Image = opened
        if suffix in (".jpg", ".jpeg") and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(path)


def read_items(path: Path) -> list[dict[str, Any]]:
    """A prompts file: JSON Lines, each line an item object (`prompt`, `references`, `count`,
    `aspect_ratio`, `image_size`, `metadata`) or a bare JSON string (a prompt); blank lines and
    lines starting with # are skipped."""
    items: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail(f"error usage: {path}:{number} is not JSON ({exc.msg})")
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            _fail(f"error usage: {path}:{number} must be an object or a string")
        items.append(value)
    if not items:
        _fail(f"error usage: {path} holds no items")
    return items


@app.command()
def generate(
    ctx: typer.Context,
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Collection the references come from.")
    ],
    prompt: Annotated[str | None, typer.Argument(help="What to make.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            exists=True,
            dir_okay=False,
            help="Many prompts: a JSON Lines file, one item (or prompt string) per line.",
        ),
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="Through Gemini's Batch API: half the price, within 24 hours."
        ),
    ] = False,
    ref: Annotated[
        list[str] | None,
        typer.Option("--ref", help=f"Reference asset id (repeatable, up to {MAX_REFERENCES})."),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Pick references by a text search.")
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=MAX_REFERENCES, help="References taken by --query.")
    ] = 3,
    count: Annotated[int, typer.Option(min=1, max=4, help="Images to make.")] = 1,
    aspect_ratio: Annotated[
        str | None, typer.Option("--aspect-ratio", help="1:1, 3:2, 16:9, 1:8, ...")
    ] = None,
    image_size: Annotated[
        str | None, typer.Option("--image-size", help="512, 1K, 2K or 4K.")
    ] = None,
    save: Annotated[
        bool,
        typer.Option("--save/--no-save", help="Store the results in the collection too."),
    ] = False,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="URL to POST the finished job to (signed).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the job to its end.")
    ] = True,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Image file to write [default: generated-<id>.png]; with --from, a folder "
            "[default: generated-<id>/] for the images and results.jsonl.",
        ),
    ] = None,
) -> None:
    """Generate images from a prompt and references from a collection (chosen by id with
    --ref, or by a text search with --query; with neither, from the prompt alone). With
    --from, many prompts in one job; the options given here are their defaults."""
    if ref and query:
        _fail("error usage: give references with --ref ID... or --query TEXT, not both")
    if (prompt is None) == (from_file is None):
        _fail("error usage: give a PROMPT or --from FILE (one of them)")
    references = None
    if ref:
        references = _validated(lambda: AssetReferences(asset_ids=list(ref)))
    elif query:
        references = _validated(lambda: AssetReferences(query=query, top_k=top_k))
    body: dict[str, Any] = {
        "collection": collection,
        "references": references,
        "save_to_collection": save,
        "aspect_ratio": aspect_ratio,
        "image_size": image_size,
        "mode": "batch" if batch else "interactive",
        "webhook": webhook,
    }
    if from_file is not None:
        body["items"] = read_items(from_file)
    else:
        body |= {"prompt": prompt, "count": count}
    given = {k: v for k, v in body.items() if v is not None}
    request = _validated(lambda: GenerateRequest.model_validate(given))
    with _handle_errors(ctx), _client(ctx) as client:
        job = client.submit(
            JobKind.generate,
            request,
            wait=SUBMIT_WAIT_S if wait and not batch else None,
            idempotency_key=str(uuid.uuid4()),
        )
        mode = "batch " if batch else ""
        err.print(f"generate {mode}job {job.id}")
        if not wait:
            console.print(job.id)
            err.print(f"follow it with `assetrag jobs {job.id}`; `assetrag results {job.id}`")
            return
        job = _finish(client, job, "generate")
        if request.bulk:
            _save_bulk(client, job, output)
            return
        if job.state != JobState.completed or not isinstance(job.result, GenerateResult):
            code, message = (job.error.code, job.error.message) if job.error else (job.state, "")
            _fail(f"error {code}: {message or 'generation did not complete'}", EXIT_JOB_FAILED)
        _save_outputs(client, job.id, job.result, output)


def _save_bulk(client: AssetragClient, job: Job, output: Path | None) -> None:
    """Every item's images and the results file into one folder."""
    if job.error is not None:
        _fail(f"error {job.error.code}: {job.error.message}", EXIT_JOB_FAILED)
    folder = output or Path(f"generated-{job.id[:8]}")
    folder.mkdir(parents=True, exist_ok=True)
    lines = client.results(job.id)
    for line in lines:
        if line.status != "succeeded" or not isinstance(line.result, dict):
            message = line.error.message if line.error else line.status
            err.print(f"[yellow]item {line.index}: {escape(message)}[/yellow]")
            continue
        for n, image in enumerate(line.result.get("images", [])):
            ext = image["mime_type"].split("/")[-1].replace("jpeg", "jpg")
            path = folder / f"item-{line.index:04d}-{n}.{ext}"
            path.write_bytes(client.content(image["content_url"]))
    (folder / "results.jsonl").write_text(
        "".join(line.model_dump_json(exclude_none=True) + "\n" for line in lines)
    )
    p = job.progress
    console.print(
        f"{job.state.value}: {p.succeeded} of {p.total} item(s) made images, {p.failed} failed; "
        f"saved to {escape(str(folder))}/"
    )
    if job.state != JobState.completed or p.succeeded == 0:
        raise typer.Exit(EXIT_JOB_FAILED)


@app.command()
def results(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A finished job.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """A finished job's results as JSON Lines: one line per item (index, status, result or
    error)."""
    with _handle_errors(ctx), _client(ctx) as client:
        text = "".join(
            line.model_dump_json(exclude_none=True) + "\n" for line in client.results(job_id)
        )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {escape(str(output))}")


def _save_outputs(
    client: AssetragClient, job_id: str, result: GenerateResult, output: Path | None
) -> None:
    images = result.images
    out = output or Path(f"generated-{job_id[:8]}.png")
    for image, path in zip(images, _output_paths(out, len(images)), strict=True):
        _save_image(client.content(image.content_url), image.mime_type, path)
        extra = f" (asset {image.asset_id})" if image.asset_id else ""
        console.print(f"saved {escape(str(path))} {image.width}x{image.height}{escape(extra)}")
    if result.text:
        console.print(f"text: {escape(result.text)}")
    console.print(f"references: {escape(', '.join(result.references)) or '-'}")
    console.print(f"model: {escape(result.model)}")
    if not images:
        err.print("[yellow]the model returned no image[/yellow]")
        raise typer.Exit(EXIT_JOB_FAILED)


# -- jobs and collections -------------------------------------------------------------------


def _fmt_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).astimezone().strftime("%m-%d %H:%M")


def _fmt_progress(job: JobSummary) -> str:
    p = job.progress
    text = f"{p.succeeded + p.failed}/{p.total}"
    return f"{text} ({p.failed} failed)" if p.failed else text


@app.command()
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
    with _handle_errors(ctx), _client(ctx) as client:
        if job_id:
            typer.echo(client.get_job(job_id).model_dump_json(indent=2))
            return
        page = client.list_jobs(kind=kind, state=state, limit=limit, cursor=cursor)
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    if not page.data:
        console.print("no jobs")
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
            _fmt_duration(job),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {escape(page.next_cursor)}")


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to stop.")],
) -> None:
    """Cancel a queued or running job (items already stored stay)."""
    with _handle_errors(ctx), _client(ctx) as client:
        job = client.cancel_job(job_id)
    console.print(f"job {job.id} {job.state.value}")


@app.command()
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
    request = _validated(lambda: DuplicatesRequest(collection=collection, threshold=threshold))
    with _handle_errors(ctx), _client(ctx) as client:
        job = _finish(client, client.submit(JobKind.duplicates, request), "duplicates")
        if not isinstance(job.result, DuplicatesResult) or job.state != JobState.completed:
            _print_job_error(job)
            raise typer.Exit(EXIT_JOB_FAILED)
        if as_json:
            for cluster in client.clusters(job.id):
                typer.echo(cluster.model_dump_json())
            return
    result = job.result
    console.print(
        f"{result.cluster_count} cluster(s), {result.duplicate_count} of {result.scanned} "
        f"assets, at similarity >= {result.threshold:g} (job {job.id})"
    )
    if result.clusters:
        _print_clusters(result.clusters[:shown])
    if result.cluster_count > shown:
        console.print(f"more: assetrag duplicates -c {escape(collection)} --json")


def _print_clusters(clusters: list[Cluster]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "size", "lowest similarity", "assets"):
        table.add_column(column)
    for rank, cluster in enumerate(clusters, 1):
        ids = " ".join(a[:12] for a in cluster.asset_ids[:6])
        more = f" (+{len(cluster.asset_ids) - 6})" if len(cluster.asset_ids) > 6 else ""
        table.add_row(
            str(rank), str(len(cluster.asset_ids)), f"{cluster.min_similarity:.4f}", ids + more
        )
    console.print(table)


@app.command()
def collections(ctx: typer.Context) -> None:
    """List collections: name, model, dimension and size."""
    with _handle_errors(ctx), _client(ctx) as client:
        found = client.list_collections()
    if not found:
        console.print("no collections")
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
    console.print(table)


@app.command()
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
    with _handle_errors(ctx), _client(ctx) as client:
        chosen = model or client.get_collection(collection).model
        request = _validated(lambda: ReindexRequest(model=chosen, drop_previous=drop_previous))
        job = _finish(client, client.reindex(collection, request), "reindex")
    if not isinstance(job.result, ReindexResult) or job.state != JobState.completed:
        _print_job_error(job)
        raise typer.Exit(EXIT_JOB_FAILED)
    result = job.result
    dropped = f"; version {result.from_version} dropped" if result.previous_dropped else ""
    console.print(
        f"{escape(result.collection)}: version {result.version} ({escape(result.model)}, "
        f"{result.dimension}-d, {job.progress.succeeded} assets) answers now, "
        f"was version {result.from_version}{dropped} (job {job.id})"
    )
    if job.progress.failed:
        _print_summary(job)


@app.command()
def versions(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to show.")],
) -> None:
    """List a collection's versions; the current one answers searches."""
    with _handle_errors(ctx), _client(ctx) as client:
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
    console.print(table)


@app.command("drop-version")
def drop_version(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection.")],
    version: Annotated[int, typer.Argument(min=1, help="A version that does not answer.")],
) -> None:
    """Drop a collection version that no longer answers."""
    with _handle_errors(ctx), _client(ctx) as client:
        client.drop_version(collection, version)
    console.print(f"dropped version {version} of {escape(collection)}")


@app.command("check-model")
def check_model(
    model: Annotated[
        str | None,
        typer.Argument(
            help="A CLIP model name or checkpoint file. [default: ASSETRAG_CLIP_MODEL]",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="A folder of your own images to compare on. [default: built-in probe images]",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many images.")] = 32,
) -> None:
    """Compare the onnx image encoder (fp32, int8) with torch fp32: cosine parity and speed.

    Runs here, on the CPU, exporting into the data dir's cache as a worker would; exits 1
    when a runtime falls below ASSETRAG_ONNX_MIN_COSINE (a worker would refuse to serve it).
    """
    from shared.clip.encoder import ClipEncoder
    from shared.settings import get_settings

    settings = get_settings()
    spec = model or settings.clip_model
    encoder = ClipEncoder(spec, "cpu", "fp32", cache_dir=settings.data_dir / "onnx")
    try:
        pictures = (
            _folder_images(images, limit, encoder.input_resolution, settings.max_image_pixels)
            if images
            else None
        )
        checks = encoder.check_onnx(pictures)
    except (ValueError, OSError) as exc:
        _fail(f"error: {exc}")
    bound = settings.onnx_min_cosine
    console.print(
        f"{escape(spec)}: image tower on {len(pictures or [])} images"
        if pictures
        else f"{escape(spec)}: image tower on the probe images"
    )
    console.print(_checks_table(checks, bound))
    refused = [c for c in checks if c.parity is not None and c.parity.min_cosine < bound]
    for check in refused:
        assert check.parity is not None
        err.print(
            f"{check.runtime}: min cosine {check.parity.min_cosine:.6f} is below the bound "
            f"{bound} (ASSETRAG_ONNX_MIN_COSINE): a worker would refuse to serve it"
        )
    if refused:
        raise typer.Exit(EXIT_JOB_FAILED)


def _checks_table(checks: list[Any], bound: float) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("runtime", "min cos", "mean cos", "img/s", "x torch", "serves"):
        table.add_column(column)
    base = checks[0].images_per_s
    for check in checks:
        found = check.parity
        if found is None:
            cosines, serves = ("1", "1"), "reference"
        else:
            cosines = (f"{found.min_cosine:.6f}", f"{found.mean_cosine:.6f}")
            serves = "yes" if found.min_cosine >= bound else "no"
        speed = f"{check.images_per_s:.1f}"
        table.add_row(check.runtime, *cosines, speed, f"{check.images_per_s / base:.2f}", serves)
    return table


def _folder_images(folder: Path, limit: int, resolution: int, max_pixels: int) -> list[Any]:
    from shared.images import sniff_and_decode

    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        try:
            found.append(sniff_and_decode(path.read_bytes(), max_pixels, resolution)[1])
        except Exception as exc:  # a bad file is skipped, and said so
            err.print(f"skipped {escape(str(path))}: {exc}")
        if len(found) >= limit:
            break
    if not found:
        _fail(f"error: no readable images in {folder}")
    return found


if __name__ == "__main__":  # pragma: no cover
    app()
