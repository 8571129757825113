"""Every Celery task of the service, in one place: a name (shared/tasks.py, which also routes
it to its queue), the plain function it runs, and the guard around that function. The job
modules (embed, search, generate, …) import no Celery app and are called directly by tests;
`HANDLERS` is the registry the tests' inline runner uses too.

Every task is acknowledged late (after it ran), so a worker killed mid-task leaves its message
to be delivered again: each function starts its work only while the job still wants it and
counts it once (shared/jobs/store.py), which makes a redelivery harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task

from shared import tasks as names
from workers import brand_check, duplicates, embed, generate, generate_batch, reindex, search
from workers.celery_app import app
from workers.context import WorkerContext, worker_context

Handler = Callable[..., Any]  # (ctx, job id, *args)

HANDLERS: dict[str, Handler] = {
    names.PLAN_EMBED: embed.plan_embed,
    names.EMBED_BATCH: embed.embed_batch,
    names.SAVE_GENERATED: embed.save_generated,
    names.RUN_SEARCH: search.run_search,
    names.RUN_GENERATE: generate.run_generate,
    names.RESOLVE_REFERENCES: generate.resolve_queries,
    names.GENERATE_ITEMS: generate.generate_items,
    names.FINISH_GENERATE: generate.finish_generate,
    names.SCORE_BRAND: generate.score_items,
    names.PLAN_BRAND_CHECK: brand_check.plan_brand_check,
    names.BRAND_CHECK_BATCH: brand_check.brand_check_batch,
    names.FINISH_BRAND_CHECK: brand_check.finish_brand_check,
    names.COLLECT_BATCH: generate_batch.collect_batch,
    names.PLAN_DUPLICATES: duplicates.plan_duplicates,
    names.DUPLICATES_BATCH: duplicates.duplicates_batch,
    names.CLUSTER_DUPLICATES: duplicates.cluster_duplicates,
    names.PLAN_REINDEX: reindex.plan_reindex,
    names.REINDEX_BATCH: reindex.reindex_batch,
    names.SWAP_REINDEX: reindex.swap_reindex,
}

# What runs instead of the plain function in a worker, where it differs from "an unexpected
# error fails the job": batches are tried again while a part is down, and a failed swap ends
# the re-index mark too.
GUARDED: dict[str, Handler] = {
    names.EMBED_BATCH: embed.embed_batch_with_retries,
    names.BRAND_CHECK_BATCH: brand_check.brand_check_batch_with_retries,
    names.DUPLICATES_BATCH: duplicates.duplicates_batch_with_retries,
    names.REINDEX_BATCH: reindex.reindex_batch_with_retries,
    names.SWAP_REINDEX: reindex.swap_or_fail,
}


def run_guarded(ctx: WorkerContext, name: str, job_id: str, *args: Any) -> None:
    """A task's body as a worker runs it."""
    if name in GUARDED:
        GUARDED[name](ctx, job_id, *args)
        return
    with ctx.failing_job(job_id):
        HANDLERS[name](ctx, job_id, *args)


class ContextTask(Task):
    """Base task: the process's context is created lazily, once, and shared by all tasks."""

    abstract = True

    @property
    def ctx(self) -> WorkerContext:
        return worker_context()


def _register(name: str) -> Task:
    def run(self: ContextTask, job_id: str, *args: Any) -> None:
        run_guarded(self.ctx, name, job_id, *args)

    run.__name__ = run.__qualname__ = name.rsplit(".", 1)[-1] + "_task"
    return app.task(name=name, base=ContextTask, bind=True, acks_late=True)(run)  # type: ignore[no-any-return]


TASKS: dict[str, Task] = {name: _register(name) for name in HANDLERS}
