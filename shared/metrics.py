"""Prometheus metrics of the worker processes, and of the shared code they run (Gemini
calls, job endings).

The scheme: every worker process serves its own `/metrics` on `ASSETRAG_METRICS_PORT`
(0: none). Workers run solo or thread pools, never prefork, so one process holds all of a
worker's counters and no multiprocess directory is needed. `assetrag up` gives each worker a
port of its own; in compose every container serves the same port on its own address. The
API serves its metrics on its own `/metrics` route (`api/metrics.py`).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("assetrag.metrics")

# images/s is rate(assetrag_embed_images_total{outcome="stored"}[1m])
EMBED_IMAGES = Counter(
    "assetrag_embed_images_total", "Images handled by embed batches", ["outcome"]
)
BATCH_STAGE = Histogram(
    "assetrag_embed_batch_stage_seconds",
    "Time an embed batch spent in each stage (read, encode, write, ...)",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
# One search job's way through a query worker; the sums over a load, divided by its searches,
# are the per-search path bench/search_latency.py --profile prints.
SEARCH_STAGE = Histogram(
    "assetrag_search_stage_seconds",
    "Time a search job spent in each stage of a query worker: claim (start and read the "
    "request), target (which version and model), encode_wait / milvus_wait (queued for a "
    "shared batch), encode / milvus (the batch's call), record (the result written)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
QUERY_BATCH_ROWS = Histogram(
    "assetrag_query_batch_rows",
    "Rows in one shared call of a query worker: texts encoded, or vectors searched",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
)
GEMINI_LATENCY = Histogram(
    "assetrag_gemini_request_seconds",
    "One Gemini generate call, retries included, by outcome",
    ["outcome"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
GEMINI_RETRIES = Counter("assetrag_gemini_retries_total", "Gemini calls tried again")
MODEL_LOAD = Gauge(
    "assetrag_model_load_seconds", "How long the worker took to load its model", ["model"]
)
TASKS = Counter(
    "assetrag_tasks_total", "Celery tasks run, by name and outcome", ["task", "outcome"]
)
TASK_TIME = Histogram(
    "assetrag_task_seconds",
    "Celery task run time, by name",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)


# Counted by the process whose call ended the job; sum over processes for the fleet.
JOBS_FINISHED = Counter(
    "assetrag_jobs_finished_total", "Jobs that reached a terminal state", ["kind", "state"]
)


def observe_batch(stored: int, failed: int, timings: dict[str, float]) -> None:
    """An embed batch's counts and its time per stage."""
    EMBED_IMAGES.labels("stored").inc(stored)
    EMBED_IMAGES.labels("failed").inc(failed)
    for stage, seconds in timings.items():
        BATCH_STAGE.labels(stage).observe(seconds)


def serve_metrics(host: str, port: int) -> None:
    """Serves this process's metrics over HTTP in a daemon thread (port 0: none)."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        # Work matters more than its metrics: say so loudly and keep serving.
        log.error("cannot serve metrics on %s:%d (%s); this process exports none", host, port, exc)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)
