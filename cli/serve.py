"""Runs one part of the service in this process: the HTTP API (`assetrag api`, uvicorn) or
one Celery worker (`assetrag worker`), with the pool and concurrency its queues call for."""

from __future__ import annotations

import os

from shared.logs import configure_logging
from shared.settings import get_settings


def default_pool(queues: list[str]) -> tuple[str, int]:
    """The pool and concurrency a worker for these queues should run by default.

    Embed workers run solo: the model lives in the one process that consumes, and no pool
    ever forks after CUDA is initialised. Generate workers are I/O bound: many threads.
    """
    settings = get_settings()
    if "embed" in queues:
        return "solo", 1
    if "generate" in queues:
        return "threads", settings.gemini_concurrency
    if "query" in queues:  # many threads: their text queries are encoded in shared batches
        return "threads", settings.query_concurrency
    return "threads", 4


def run_worker(
    queues: list[str],
    concurrency: int | None = None,
    pool: str | None = None,
    gpu: str | None = None,
    metrics_port: int | None = None,
) -> None:
    # Both before the worker reads its settings or CUDA initialises: the process sees only
    # its GPU (as cuda:0), and the option is the variable.
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if metrics_port is not None:
        os.environ["ASSETRAG_METRICS_PORT"] = str(metrics_port)
    get_settings.cache_clear()
    from workers.celery_app import app

    chosen_pool, chosen_concurrency = default_pool(queues)
    name = "-".join(queues) + (f"-gpu{gpu}" if gpu is not None else "")
    # Logging set up before Celery starts, so its start-up warnings are log records too, and
    # its banner (text on stdout) left out when logs must be JSON lines.
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    quiet = ["--quiet"] if settings.log_format == "json" else []
    app.worker_main(
        [
            *quiet,
            "worker",
            "--queues",
            ",".join(queues),
            "--pool",
            pool or chosen_pool,
            "--concurrency",
            str(concurrency or chosen_concurrency),
            "--loglevel",
            settings.log_level,
            "--hostname",
            f"{name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def run_api(host: str, port: int) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    settings = get_settings()
    json_logs = settings.log_format == "json"
    if json_logs:
        # uvicorn's loggers propagate to our root handler instead of its own text format.
        configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None if json_logs else LOGGING_CONFIG,
        access_log=settings.access_log,
    )
