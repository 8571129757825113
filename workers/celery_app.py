"""The Celery app the worker command loads, and a worker's start-up and life: load its model
before it counts as ready (embed and query workers only: a generate worker runs none), beat
(with the task messages it holds), and on the default queue start the background duties
(workers/background.py). The tasks themselves are registered by workers/tasks.py."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery, signals
from celery.bootsteps import RUN
from celery.worker import state as worker_state

from shared.heartbeats import HEARTBEAT_PERIOD_S, WorkerHeartbeat
from shared.logs import BATCH_ID, JOB_ID, configure_logging
from shared.metrics import MODEL_LOAD, TASK_TIME, TASKS, serve_metrics
from shared.settings import Settings, get_settings
from shared.tasks import DUPLICATES_BATCH, EMBED_BATCH, REINDEX_BATCH, make_celery
from workers.background import Duties
from workers.context import worker_context

if TYPE_CHECKING:
    from workers.text_process import TextProcess

log = logging.getLogger("assetrag.worker")
# Queues whose tasks run CLIP. A generate worker waits on Gemini and loads no model: reference
# queries are searched on a query worker first, saved images encoded on an embed worker.
MODEL_QUEUES = frozenset({"embed", "query"})
# A worker whose consumer stays down this long while Redis answers exits, so that its
# supervisor (`assetrag up`, compose's restart policy) starts a fresh one.
STUCK_EXIT_S = 120.0
# Tasks whose second argument is a batch id (every task's first is its job id).
BATCH_TASKS = frozenset({EMBED_BATCH, DUPLICATES_BATCH, REINDEX_BATCH})


def create_app() -> Celery:
    app = make_celery(get_settings())
    app.conf.imports = ("workers.tasks",)
    return app


app = create_app()
_duties: list[Duties] = []
_text_processes: list[TextProcess] = []


def consuming(consumer: Any) -> bool:
    """Whether the consumer is running on a live broker connection with its queues bound.

    A process that merely answers is not enough: after a Redis reconnect a worker can stay
    up without consuming, and then it must drop out of /readyz.
    """
    connection = getattr(consumer, "connection", None)
    task_consumer = getattr(consumer, "task_consumer", None)
    return bool(
        consumer.blueprint.state == RUN
        and connection is not None
        and connection.connected
        and task_consumer is not None
        and task_consumer.queues
    )


def held_tags() -> set[str]:
    """Delivery tags of the task messages this worker holds: running or reserved."""
    requests = [*worker_state.active_requests, *worker_state.reserved_requests]
    return {str(r.delivery_info.get("delivery_tag")) for r in requests if r.delivery_info}


@signals.worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    """Loads the model first (a worker is ready only once it can serve), then announces
    itself for /readyz and starts the background duties of its queues."""
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    ctx = worker_context()
    serve_metrics(ctx.settings.metrics_host, ctx.settings.metrics_port)
    ctx.name = sender.hostname
    if MODEL_QUEUES & set(queues):
        limit_torch_threads(ctx.settings, queues)
        texts = text_process_for(ctx.settings, queues)
        _load_model_or_exit(ctx)  # meanwhile the child loads the model too
        if texts is not None:
            _load_texts_or_exit(ctx, texts)
    heartbeat = WorkerHeartbeat(ctx.redis)
    heartbeat.beat(sender.hostname, queues, held_tags())
    duties = Duties(app, ctx)
    _duties.append(duties)
    duties.every("heartbeat", HEARTBEAT_PERIOD_S, _beater(sender, heartbeat, queues))
    if "default" in queues:
        duties.start_default()


def limit_torch_threads(settings: Settings, queues: list[str]) -> int | None:
    """A worker serving queries but not embeds runs torch on ASSETRAG_QUERY_TORCH_THREADS
    threads (set on the torch thread, where every torch call runs); returns the count set."""
    threads = settings.query_torch_threads
    if "query" not in queues or "embed" in queues or threads == 0:
        return None
    import torch

    from shared.clip.torch_thread import TORCH_THREAD

    TORCH_THREAD.run(torch.set_num_threads, threads)
    return threads


def text_process_for(settings: Settings, queues: list[str]) -> TextProcess | None:
    """A started child process for text queries (workers/text_process.py), in a worker that
    serves queries but not embeds, unless ASSETRAG_QUERY_TEXT_PROCESS is off."""
    if "query" not in queues or "embed" in queues or not settings.query_text_process:
        return None
    from workers.text_process import TextProcess

    process = TextProcess(settings, settings.query_torch_threads)
    process.start(settings.clip_model)
    _text_processes.append(process)
    return process


def _load_texts_or_exit(ctx: Any, process: TextProcess) -> None:
    """Waits for the child's model, then sends text queries there; a child that cannot load
    it fails the worker's start as the worker's own load would."""
    try:
        loaded = process.load(ctx.settings.clip_model)
    except Exception:
        log.critical("the text encoder process cannot load its model; exiting", exc_info=True)
        logging.shutdown()
        os._exit(1)
    ctx.encode_texts_in(process)
    log.info(
        "texts are encoded in process %s: model %s on %s (%s; text tower: %s; %d torch "
        "threads), loaded in %.1fs",
        process.pid,
        loaded.model_id,
        loaded.device,
        loaded.precision,
        loaded.text_tower,
        loaded.torch_threads,
        loaded.seconds,
    )


def _load_model_or_exit(ctx: Any) -> None:
    """A worker that cannot load its model cannot serve: it says why and exits, instead of
    idling without a heartbeat (its supervisor restarts it, and gives up if it keeps failing)."""
    started = time.perf_counter()
    try:
        encoder = ctx.encoder()
    except Exception:
        log.critical("cannot load the model %r; exiting", ctx.settings.clip_model, exc_info=True)
        logging.shutdown()
        os._exit(1)
    seconds = time.perf_counter() - started
    MODEL_LOAD.labels(encoder.model_id).set(seconds)
    log.info(
        "model %s loaded on %s (image tower: %s %s; text tower: %s; %d torch threads) in %.1fs",
        encoder.model_id,
        encoder.device,
        encoder.backend,
        encoder.image_precision,
        encoder.text_tower,
        encoder.torch_threads,
        seconds,
    )


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our own log set-up (text or JSON, with job and batch ids) instead of Celery's."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)


# When each running task started (by task id), for assetrag_task_seconds: prerun and postrun
# are separate signals, and a thread pool runs several tasks at once.
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id: str = "", task: Any = None, args: Any = (), **_: Any) -> None:
    """Log lines inside the task carry its job id (and batch id) from here on."""
    args = list(args or ())
    JOB_ID.set(str(args[0]) if args else None)
    in_batch = getattr(task, "name", "") in BATCH_TASKS and len(args) > 1
    BATCH_ID.set(str(args[1]) if in_batch else None)
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, state: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "?")
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_TIME.labels(name).observe(time.perf_counter() - started)
    TASKS.labels(name, str(state or "unknown").lower()).inc()
    JOB_ID.set(None)
    BATCH_ID.set(None)


@signals.task_received.connect
def _note_held(request: Any = None, **_: Any) -> None:
    """Lists a message as held at once, not only at the next beat."""
    tag = (getattr(request, "delivery_info", None) or {}).get("delivery_tag")
    if tag is None:
        return
    try:
        WorkerHeartbeat(worker_context().redis).hold(request.hostname, str(tag))
    except redis.RedisError:
        log.warning("could not note a held task; the next beat will")


def _beater(consumer: Any, heartbeat: WorkerHeartbeat, queues: list[str]) -> Callable[[], None]:
    down_since: float | None = None

    def beat() -> None:
        nonlocal down_since
        if consuming(consumer):
            down_since = None
            heartbeat.beat(consumer.hostname, queues, held_tags())
            return
        log.warning("not consuming from %s; withholding the heartbeat", queues)
        down_since = down_since or time.monotonic()
        if time.monotonic() - down_since > STUCK_EXIT_S and heartbeat.redis_answers():
            log.error("the consumer is stuck while Redis answers; exiting to be restarted")
            os._exit(3)

    return beat


@signals.worker_shutdown.connect
def _stop_background(sender: Any = None, **_: Any) -> None:
    for duties in _duties:
        duties.stop()
    for process in _text_processes:
        process.close()
