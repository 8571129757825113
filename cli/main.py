"""The ``assetrag`` console script: run the stack, and drive the API from a terminal.

Server-side commands (``up``, ``api``, ``worker``) import ``cli.stack`` lazily so that
``assetrag --help`` and the client commands start fast.

Exit codes: 0 success; 1 the job failed or was cancelled (or nothing to do);
2 an API error (``error <code>: <message>``), an unreachable API, or bad usage;
130 interrupted while following a job (the job keeps running).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.client import ApiError, AssetragClient, is_terminal

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

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
) -> None:
    """Run one Celery worker consuming the given queues."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        _fail("error usage: --queues needs at least one queue")
    _exit_with(_stack().run_worker(queues=names, concurrency=concurrency, pool=pool))


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


def _upload_with_progress(
    client: AssetragClient, files: list[Path]
) -> tuple[list[dict[str, Any]], list[tuple[Path, ApiError]]]:
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

    from cli.client import chunk_paths

    sizes = {p: _size(p) for p in files}
    uploads: list[dict[str, Any]] = []
    failures: list[tuple[Path, ApiError]] = []
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[files]}"),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("upload", total=sum(sizes.values()), files=f"0/{len(files)}")
        done = 0
        for chunk in chunk_paths(files, client.chunk_files, client.chunk_bytes):
            try:
                uploads.extend(client.upload_batch(chunk))
            except ApiError as exc:
                if exc.status in (401, 403, 429) or exc.status >= 500:
                    raise
                if len(chunk) == 1:
                    failures.append((chunk[0], exc))
                else:
                    for path in chunk:
                        try:
                            uploads.extend(client.upload_batch([path]))
                        except ApiError as one:
                            if one.status in (401, 403, 429) or one.status >= 500:
                                raise
                            failures.append((path, one))
            done += len(chunk)
            progress.update(
                task,
                advance=sum(sizes[p] for p in chunk),
                files=f"{done}/{len(files)}",
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


def _server_items(
    paths: list[Path], recursive: bool, pattern: str | None
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """``(items, directory)`` for ``--server-paths``: one folder is sent as ``directory``
    (the server walks it); files are ``path`` items. Extra folders, when this machine can see
    them, are expanded here into ``path`` items."""
    folders = [p for p in paths if p.is_dir() or str(p).endswith(("/", "\\"))]
    files = [p for p in paths if p not in folders]
    directory: dict[str, Any] | None = None
    items: list[dict[str, Any]] = [{"path": _server_path(p)} for p in files]
    if folders:
        first, rest = folders[0], folders[1:]
        directory = {"path": _server_path(first), "recursive": recursive}
        if pattern:
            directory["pattern"] = pattern
        for folder in rest:
            if not folder.is_dir():
                _fail(
                    f"error usage: only one server-side folder per job ({folder} is not "
                    "visible here to expand)"
                )
            items.extend(
                {"path": _server_path(p)} for p in expand_paths([folder], recursive, pattern)
            )
    return (items or None), directory


def _progress_of(job: dict[str, Any]) -> tuple[int, int, int | None]:
    progress = job.get("progress") or {}
    succeeded = int(progress.get("succeeded") or 0)
    failed = int(progress.get("failed") or 0)
    total = int(progress.get("total") or 0)
    # an embed job's total is 0 until its folder or item list has been planned
    return succeeded, failed, (total if total or is_terminal(job) else None)


def _follow_job(client: AssetragClient, job: dict[str, Any]) -> dict[str, Any]:
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

    if is_terminal(job):
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
        task = progress.add_task(job.get("state", "queued"), total=None, failed=0)

        def update(current: dict[str, Any]) -> None:
            _update_bar(progress, task, current)

        update(job)
        final = client.wait_job(job["id"], on_progress=update)
        update(final)
    return final


def _update_bar(progress: Progress, task: TaskID, job: dict[str, Any]) -> None:
    succeeded, failed, total = _progress_of(job)
    progress.update(
        task,
        description=str(job.get("state", "")),
        total=total,
        completed=succeeded + failed,
        failed=failed,
    )


def _duration(job: dict[str, Any]) -> float | None:
    start = _parse_time(job.get("started_at") or job.get("created_at"))
    if start is None:
        return None
    end = _parse_time(job.get("finished_at"))
    if end is None:
        if is_terminal(job):
            return None
        end = datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _print_job_error(job: dict[str, Any]) -> None:
    error = job.get("error") or {}
    if error:
        err.print(
            f"[red]error {escape(str(error.get('code', 'failed')))}: "
            f"{escape(str(error.get('message', '')))}[/red]"
        )
    elif job.get("state") == "cancelled":
        err.print("[yellow]job cancelled[/yellow]")


def _print_summary(job: dict[str, Any]) -> None:
    succeeded, failed, total = _progress_of(job)
    state = job.get("state", "?")
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(state, "white")
    console.print(
        f"job {job.get('id')} [{colour}]{state}[/{colour}]: {succeeded} succeeded, "
        f"{failed} failed, {total if total is not None else '?'} total "
        f"in {_fmt_duration(_duration(job))}"
    )
    errors = job.get("errors") or []
    if errors:
        table = Table(title=f"{len(errors)} item error(s)", title_justify="left")
        for column in ("index", "source", "code", "message"):
            table.add_column(column, overflow="fold")
        for item in errors:
            table.add_row(
                escape(str(item.get("index", ""))),
                escape(str(item.get("source", ""))),
                escape(str(item.get("code", ""))),
                escape(str(item.get("message", ""))),
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
            items, directory = _server_items(paths, recursive, pattern)
            count = f"{len(items or [])} file(s)" + (
                f" + folder {directory['path']}" if directory else ""
            )
        else:
            try:
                files = expand_paths(paths, recursive, pattern)
            except FileNotFoundError as exc:
                _fail(f"error not_found: no such file or folder: {exc}")
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
            items = [{"upload_id": u["upload_id"]} for u in uploads]
            directory = None
            count = f"{len(items)} item(s)"
        job = client.submit_embed(
            collection, items=items, directory=directory, idempotency_key=str(uuid.uuid4())
        )
        job_id = job["id"]
        console.print(f"embed job {job_id} submitted ({count}) into collection {collection}")
        if not wait:
            console.print(f"follow it with `assetrag jobs {job_id}`")
            return
        with _interruptible(job_id):
            final = _follow_job(client, job)
        _print_summary(final)
    if final.get("state") != "completed":
        raise typer.Exit(EXIT_JOB_FAILED)


# -- search ---------------------------------------------------------------------------------


def _parse_filters(values: list[str] | None) -> dict[str, Any]:
    """``key=value`` filters a string field; ``key:=value`` takes a JSON literal (a number or
    true/false) for typed metadata."""
    out: dict[str, Any] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key.strip(":").strip():
            _fail(f"error usage: --filter wants key=value or key:=json, got {value!r}")
        if key.endswith(":"):
            try:
                parsed = json.loads(val)
            except ValueError:
                _fail(f"error usage: --filter {key}={val}: not a JSON number or boolean")
            if not isinstance(parsed, bool | int | float | str):
                _fail(f"error usage: --filter {key}={val}: not a JSON number or boolean")
            out[key[:-1].strip()] = parsed
        else:
            out[key.strip()] = val
    return out


def _finish(client: AssetragClient, job: dict[str, Any], label: str) -> dict[str, Any]:
    """Wait (quietly, with a spinner) for a submitted job that did not finish in time."""
    if is_terminal(job):
        return job
    with _interruptible(job["id"]), err.status(f"{label} job {job['id']} {job.get('state')}…"):
        return client.wait_job(job["id"])


def _metadata_text(metadata: Any) -> str:
    if not metadata:
        return ""
    if isinstance(metadata, dict):
        return ", ".join(f"{k}={v}" for k, v in metadata.items() if k != "filename")
    return str(metadata)


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
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 10,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Metadata filter key=value (a string), or key:=123 / key:=true for typed "
            "values (repeatable, all must match).",
        ),
    ] = None,
    min_score: Annotated[float | None, typer.Option("--min-score")] = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Write a contact sheet of the hits here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON.")] = False,
) -> None:
    """Search a collection by text or by an example image."""
    if (text is None) == (image is None):
        _fail("error usage: give either a TEXT query or --image FILE (one of them)")
    filters = _parse_filters(filter_)
    with _handle_errors(ctx), _client(ctx) as client:
        if image is not None:
            uploads = client.upload_batch([image])
            query: dict[str, Any] = {"upload_id": uploads[0]["upload_id"]}
        else:
            query = {"text": text}
        job = client.submit_search(
            collection,
            [query],
            top_k=top_k,
            filter=filters or None,
            min_score=min_score,
            wait=SUBMIT_WAIT_S,
        )
        job = _finish(client, job, "search")
        if job.get("state") != "completed":
            _print_job_error(job)
            raise typer.Exit(EXIT_JOB_FAILED)
        results = (job.get("result") or {}).get("results") or [[]]
        hits: list[dict[str, Any]] = results[0] if results else []
        if as_json:
            typer.echo(json.dumps(hits, indent=2))
        elif not hits:
            console.print("no results")
        else:
            table = Table(title=f"{len(hits)} hit(s) in {collection}", title_justify="left")
            table.add_column("#", justify="right")
            table.add_column("score", justify="right")
            table.add_column("asset")
            table.add_column("filename", overflow="fold")
            table.add_column("source", overflow="fold")
            table.add_column("metadata", overflow="fold")
            for rank, hit in enumerate(hits, 1):
                score = hit.get("score")
                table.add_row(
                    str(rank),
                    f"{score:.3f}" if isinstance(score, int | float) else "",
                    escape(str(hit.get("asset_id", ""))[:12]),
                    escape(str(hit.get("filename") or "")),
                    escape(str(hit.get("source") or "")),
                    escape(_metadata_text(hit.get("metadata"))),
                )
            console.print(table)
        if sheet is not None:
            if not hits:
                err.print("[yellow]no hits: no contact sheet written[/yellow]")
                return
            _write_sheet(client, hits, sheet)
            (err if as_json else console).print(f"contact sheet: {sheet}")


def _write_sheet(client: AssetragClient, hits: list[dict[str, Any]], out: Path) -> None:
    from cli.sheet import caption, contact_sheet

    tiles: list[tuple[bytes, str]] = []
    for rank, hit in enumerate(hits, 1):
        data = b""
        url = hit.get("content_url")
        if url:
            try:
                data = client.content(str(url))
            except (ApiError, httpx.HTTPError) as exc:
                err.print(f"[yellow]could not fetch hit #{rank}: {escape(str(exc))}[/yellow]")
        score = hit.get("score")
        name = hit.get("filename") or str(hit.get("asset_id", ""))[:12]
        tiles.append(
            (data, caption(rank, float(score) if isinstance(score, int | float) else None, name))
        )
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


def _save_image(data: bytes, mime_type: str | None, path: Path) -> None:
    """Write the bytes, re-encoding when the file's suffix asks for another format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if mime_type and suffix and suffix not in _MIME_SUFFIX.get(mime_type, {suffix}):
        try:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(data)) as opened:
                img: Image.Image = opened
                if suffix in (".jpg", ".jpeg") and img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")
                img.save(path)
            return
        except Exception:  # noqa: BLE001 - fall back to the bytes as sent
            pass
    path.write_bytes(data)


@app.command()
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to make.")],
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Collection the references come from.")
    ],
    ref: Annotated[
        list[str] | None, typer.Option("--ref", help="Reference asset id (repeatable, up to 14).")
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Pick references by a text search.")
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=14, help="References taken by --query.")
    ] = 3,
    count: Annotated[int, typer.Option(min=1, max=4, help="Images to make.")] = 1,
    aspect_ratio: Annotated[
        str | None, typer.Option("--aspect-ratio", help="1:1, 3:2, 16:9, ...")
    ] = None,
    image_size: Annotated[str | None, typer.Option("--image-size", help="1K, 2K or 4K.")] = None,
    save: Annotated[
        bool,
        typer.Option("--save/--no-save", help="Store the results in the collection too."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Image file to write [default: generated-<id>.png]."),
    ] = None,
) -> None:
    """Generate images from a prompt and references from a collection (chosen by id with
    --ref, or by a text search with --query; with neither, from the prompt alone)."""
    if ref and query:
        _fail("error usage: give references with --ref ID... or --query TEXT, not both")
    references: dict[str, Any] | None = None
    if ref:
        references = {"asset_ids": list(ref)}
    elif query:
        references = {"query": query, "top_k": top_k}
    with _handle_errors(ctx), _client(ctx) as client:
        job = client.submit_generate(
            prompt=prompt,
            collection=collection,
            references=references,
            save_to_collection=save,
            count=count,
            aspect_ratio=aspect_ratio,
            image_size=image_size,
            wait=SUBMIT_WAIT_S,
            idempotency_key=str(uuid.uuid4()),
        )
        err.print(f"generate job {job['id']}")
        job = _finish(client, job, "generate")
        if job.get("state") != "completed":
            error = job.get("error") or {}
            _fail(
                f"error {error.get('code', job.get('state'))}: "
                f"{error.get('message', 'generation did not complete')}",
                EXIT_JOB_FAILED,
            )
        result = job.get("result") or {}
        images = result.get("images") or []
        out = output or Path(f"generated-{str(job['id'])[:8]}.png")
        for image, path in zip(images, _output_paths(out, len(images)), strict=True):
            data = client.content(str(image["content_url"]))
            _save_image(data, image.get("mime_type"), path)
            extra = f" (asset {image['asset_id']})" if image.get("asset_id") else ""
            size = (
                f" {image['width']}x{image['height']}"
                if image.get("width") and image.get("height")
                else ""
            )
            console.print(f"saved {escape(str(path))}{size}{escape(extra)}")
        if not images:
            err.print("[yellow]the model returned no image[/yellow]")
        if result.get("text"):
            console.print(f"text: {escape(str(result['text']))}")
        refs = result.get("references") or []
        console.print(f"references: {escape(', '.join(map(str, refs))) or '-'}")
        if result.get("model"):
            console.print(f"model: {escape(str(result['model']))}")
        if not images:
            raise typer.Exit(EXIT_JOB_FAILED)


# -- jobs -----------------------------------------------------------------------------------


def _fmt_time(value: Any) -> str:
    parsed = _parse_time(value)
    if parsed is None:
        return "-"
    return parsed.astimezone().strftime("%m-%d %H:%M")


def _fmt_progress(job: dict[str, Any]) -> str:
    succeeded, failed, total = _progress_of(job)
    text = f"{succeeded + failed}/{total if total is not None else '?'}"
    return f"{text} ({failed} failed)" if failed else text


@app.command()
def jobs(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="Show this job in full.")] = None,
    kind: Annotated[str | None, typer.Option(help="embed, search or generate.")] = None,
    state: Annotated[
        str | None, typer.Option(help="queued, running, completed, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Page on from this cursor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List recent jobs, newest first, or show one job."""
    with _handle_errors(ctx), _client(ctx) as client:
        if job_id:
            typer.echo(json.dumps(client.get_job(job_id), indent=2, default=str))
            return
        page = client.list_jobs(kind=kind, state=state, limit=limit, cursor=cursor)
    items: list[dict[str, Any]] = page.get("data") or []
    if as_json:
        typer.echo(json.dumps(page, indent=2, default=str))
        return
    if not items:
        console.print("no jobs")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "kind", "state", "progress", "created", "duration"):
        table.add_column(column, no_wrap=column != "progress")
    for job in items:
        table.add_row(
            escape(str(job.get("id", ""))),
            escape(str(job.get("kind", ""))),
            escape(str(job.get("state", ""))),
            _fmt_progress(job),
            _fmt_time(job.get("created_at")),
            _fmt_duration(_duration(job)),
        )
    console.print(table)
    next_cursor = page.get("next_cursor")
    if next_cursor:
        console.print(f"more: --cursor {escape(str(next_cursor))}")


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to stop.")],
) -> None:
    """Cancel a queued or running job (items already stored stay)."""
    with _handle_errors(ctx), _client(ctx) as client:
        job = client.cancel_job(job_id)
    console.print(f"job {job.get('id', job_id)} {job.get('state', 'cancelled')}")


if __name__ == "__main__":  # pragma: no cover
    app()
