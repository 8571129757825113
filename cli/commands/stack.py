"""`assetrag up`, `api` and `worker`: the service's processes, run from `cli.stack`.

`cli.stack` is imported only when one of these runs, so that `assetrag --help` and the
client commands start fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Annotated

import typer

from cli.context import cli_of

EXIT_NOT_READY = 1

commands = typer.Typer()


def _stack() -> ModuleType:
    """``cli.stack``, imported only when a server-side command runs."""
    return importlib.import_module("cli.stack")


def _exit_with(code: object) -> None:
    if isinstance(code, bool) or not isinstance(code, int):
        code = 0
    raise typer.Exit(code)


@commands.command()
def up(
    host: Annotated[str, typer.Option(help="Address the API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run the whole stack on this machine: API, one worker per queue, Milvus Lite, Redis."""
    _exit_with(_stack().run_stack(host=host, port=port))


@commands.command()
def api(
    host: Annotated[str, typer.Option(help="Address the API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run only the HTTP API."""
    _exit_with(_stack().run_api(host=host, port=port))


@commands.command()
def worker(
    ctx: typer.Context,
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
    cli = cli_of(ctx)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        cli.fail("error usage: --queues needs at least one queue")
    stack = _stack()
    if gpu is not None and not stack.GPU_RE.fullmatch(gpu):
        cli.fail(
            f"error usage: --gpu takes a GPU index (0, 1, ...) or a GPU-/MIG- UUID, not {gpu!r}"
        )
    _exit_with(
        stack.run_worker(
            queues=names, concurrency=concurrency, pool=pool, gpu=gpu, metrics_port=metrics_port
        )
    )


@commands.command("worker-ready")
def worker_ready(ctx: typer.Context) -> None:
    """Exit 0 when a worker on this host is consuming: its model loaded (a worker's first
    heartbeat comes after that) and its heartbeat live. A container's startup probe."""
    import socket

    import redis

    from shared.heartbeats import WorkerHeartbeat
    from shared.redis_client import connect
    from shared.settings import get_settings

    cli = cli_of(ctx)
    host = socket.gethostname()  # what Celery's %h puts in the worker's name
    try:
        live = WorkerHeartbeat(connect(get_settings().redis_url)).live_on(host)
    except redis.RedisError as exc:
        cli.fail(f"error: Redis did not answer: {exc}", code=EXIT_NOT_READY)
    if not live:
        cli.fail(f"no worker on {host} is consuming yet", code=EXIT_NOT_READY)
    cli.console.print("\n".join(live))
