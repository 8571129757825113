"""How a job is answered: at once, or held until it finishes (`?wait=S`, a long-poll that
wakes on the job's published events). Submits answer 202 while the job runs and 200 once it
has finished; reads answer the freshest record."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Query, Response
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from shared import contract
from shared.contract import TERMINAL_STATES, Job

WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=contract.MAX_WAIT_S, description="hold the answer up to S seconds"),
]
# What a submit declares beside its 202: the job, when it finished within `wait`.
FINISHED_IN_TIME: dict[int | str, dict[str, Any]] = {
    200: {"model": Job, "description": "the job finished within `wait`"}
}


def job_response(job: Job, status: int = 200) -> Response:
    # pydantic's own serializer, several times faster than model_dump + json.dumps
    return Response(job.model_dump_json(), status_code=status, media_type="application/json")


async def answer(state: AppState, job: Job, wait: float | None) -> Response:
    """A submitted job: 200 when it finished within `wait`, else 202."""
    job = await wait_for(state, job, wait)
    return job_response(job, 200 if job.finished else 202)


async def wait_for(state: AppState, job: Job, wait: float | None) -> Job:
    """Holds until the job finishes or `wait` seconds pass; returns the freshest record."""
    if not wait or job.finished:
        return job
    deadline = time.monotonic() + min(wait, state.settings.max_wait_s)
    async with state.events.watch(job.id) as changed:
        fresh = await run_in_threadpool(state.jobs.get, job.id)
        while fresh is not None and not fresh.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return fresh
            published = await state.events.changed(changed, remaining)
            # "running" or "progress" cannot end the wait: read again only for an end, or
            # when the recheck is due (a message may have been lost)
            if not published or any(p in TERMINAL_STATES for p in published):
                fresh = await run_in_threadpool(state.jobs.get, job.id)
        return fresh or job
