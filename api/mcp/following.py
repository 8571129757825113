"""Waiting on a job for a tool call: long-polls of the API in short slices, and one MCP
progress notification each time the job moves (its state or its counts).

A client that cancels its call (notifications/cancelled) has the SDK cancel the handler's
task; the await on the poll in flight is where that lands, so waiting stops at once. The
job itself runs on: stopping it is `cancel_job`'s work.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from api.mcp.client import POLL_S, ServiceClient
from shared.contract import Job

# (progress, total, message): the SDK's report_progress, a no-op when the client asked for
# no progress.
Report = Callable[[float, float | None, str | None], Awaitable[None]]


def _moved(job: Job) -> tuple[str, int, int, int]:
    return (job.state.value, job.progress.total, job.progress.succeeded, job.progress.failed)


def describe(job: Job) -> str:
    p = job.progress
    return f"job {job.id} {job.state.value}: {p.succeeded + p.failed} of {p.total} done"


async def follow(
    client: ServiceClient, job: Job, authorization: str | None, wait_s: float, report: Report
) -> Job:
    """The job once it ends, or as it stands when `wait_s` runs out."""
    deadline = time.monotonic() + wait_s
    last: tuple[str, int, int, int] | None = None
    while True:
        if _moved(job) != last:
            last = _moved(job)
            done = job.progress.succeeded + job.progress.failed
            await report(float(done), float(job.progress.total) or None, describe(job))
        remaining = deadline - time.monotonic()
        if job.finished or remaining <= 0:
            return job
        job = await client.job(job.id, authorization, wait_s=min(POLL_S, remaining))
