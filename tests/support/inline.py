"""The service in one process for fast tests: the real app (TestClient, lifespan run) and the
workers' real functions, fed by a queue that runs tasks in a background thread instead of
Celery. Real Redis, real Milvus Lite; the integration tests run the same code in processes."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from shared import tasks
from shared.contract import TERMINAL_STATES, JobKind
from shared.tasks import QUEUES, TaskQueue, decode
from workers.context import WorkerContext
from workers.tasks import HANDLERS

FIRST = {
    JobKind.embed: tasks.PLAN_EMBED,
    JobKind.search: tasks.RUN_SEARCH,
    JobKind.generate: tasks.RUN_GENERATE,
    JobKind.duplicates: tasks.PLAN_DUPLICATES,
    JobKind.reindex: tasks.PLAN_REINDEX,
}


def submit(
    ctx: WorkerContext, kind: JobKind, request: dict[str, Any], tenant: str | None = None
) -> str:
    """A job created as the API creates it: its record and its first task, together."""
    job, _ = ctx.jobs.create(
        kind, request, tenant, first_task=lambda job_id: ctx.queue.message(FIRST[kind], job_id)
    )
    return job.id


def take(ctx: WorkerContext) -> list[tuple[str, list[Any]]]:
    """Every task message waiting in the queues, taken off them (oldest first)."""
    taken = []
    for queue in QUEUES:
        while (payload := ctx.redis.rpop(queue)) is not None:
            taken.append(decode(payload))  # type: ignore[arg-type]
    return taken


def run_queued(ctx: WorkerContext) -> list[tuple[str, list[Any]]]:
    """Runs the waiting tasks, and the tasks they send, until none is left; returns them."""
    ran = []
    while tasks := take(ctx):
        for name, args in tasks:
            HANDLERS[name](ctx, *args)
            ran.append((name, args))
    return ran


def run_embed(ctx: WorkerContext, request: dict[str, Any], tenant: str | None = None) -> str:
    """Submits an embed job and runs its plan and batches; returns the job id."""
    job_id = submit(ctx, JobKind.embed, request, tenant)
    ran = run_queued(ctx)
    assert [name for name, _ in ran] == [tasks.PLAN_EMBED] + [tasks.EMBED_BATCH] * (len(ran) - 1)
    return job_id


class InlineQueue(TaskQueue):
    """The task queue of the real service (messages pushed onto Redis), consumed by one
    thread that runs each task's plain function instead of a Celery worker."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx.queue.celery, ctx.redis)
        self.ctx = ctx
        self.done: list[tuple[str, list[Any]]] = []
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inline-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            popped = self.redis.brpop(list(QUEUES), timeout=0.1)
            if popped is None:
                self._idle.set()
                continue
            self._idle.clear()
            name, args = decode(popped[1])
            with self.ctx.failing_job(args[0]):
                HANDLERS[name](self.ctx, *args)
            self.done.append((name, args))

    def drain(self, timeout_s: float = 60) -> None:
        """Until every queue is empty and nothing runs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._idle.clear()
            if self._idle.wait(1) and not any(self.redis.llen(q) for q in QUEUES):
                return
        raise TimeoutError("the inline worker did not drain its queues")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class SharedTransport(httpx.BaseTransport):
    """The TestClient's in-process transport, lent to httpx clients (closing them keeps it).

    Starlette's TestClient speaks httpx2 (google-genai's fork of httpx); the CLI speaks httpx,
    so requests and answers are carried across whole.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        import httpx2

        answer = self.inner.handle_request(
            httpx2.Request(
                request.method,
                str(request.url),
                headers=request.headers.raw,
                content=request.read(),
            )
        )
        return httpx.Response(
            answer.status_code, headers=answer.headers.raw, content=answer.read(), request=request
        )

    def close(self) -> None:
        pass


def follow_batch(ctx: WorkerContext, job_id: str, timeout_s: float = 20) -> None:
    """What the default workers' batch poller does, and the tasks it sends, until the job has
    ended."""
    from workers.generate_batch import poll_batches

    deadline = time.monotonic() + timeout_s
    while ctx.jobs.state(job_id) not in TERMINAL_STATES:
        assert time.monotonic() < deadline, ctx.jobs.get(job_id)
        poll_batches(ctx)
        run_queued(ctx)
        time.sleep(0.1)
