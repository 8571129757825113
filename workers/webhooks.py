"""Delivering job webhooks: a POST of the final job when it ends, signed (shared/webhooks.py),
retried with backoff for ASSETRAG_WEBHOOK_RETRY_S after the job ended, each attempt logged.

A job that ends with a webhook is put in a due set (shared/jobs/store.py). Default-queue workers
look at it every half second; a worker claims a due job by removing it, makes one attempt,
and on failure puts it back due after a tenacity backoff (exponential with jitter, up to ten
minutes): retries survive worker restarts and never hold a thread while they wait. The
address is checked again at each attempt (DNS may have changed since the submit), and
redirects are not followed.
"""

from __future__ import annotations

import logging
import time

import httpx
import tenacity

from shared import webhooks
from shared.errors import CodedError
from shared.rules import check_webhook_url
from workers.context import WorkerContext

log = logging.getLogger("assetrag.webhooks")
BACKOFF = tenacity.wait_exponential_jitter(initial=1, max=600, jitter=1)


def backoff_s(attempt: int) -> float:
    """tenacity's exponential backoff with jitter for the given attempt (1 = the first)."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(BACKOFF(state))


def deliver_due(ctx: WorkerContext, now: float | None = None) -> list[tuple[str, bool]]:
    """One attempt for each webhook that is due (and this worker claims)."""
    done = []
    for job_id in ctx.jobs.outbox.due(time.time() if now is None else now):
        if ctx.jobs.outbox.claim(job_id):
            done.append((job_id, deliver(ctx, job_id)))
    return done


def deliver(ctx: WorkerContext, job_id: str) -> bool:
    settings = ctx.settings
    url = ctx.jobs.outbox.target(job_id)
    job = ctx.jobs.get(job_id)
    if url is None or job is None or not settings.webhook_secret:
        return False
    attempt = ctx.jobs.outbox.attempt(job_id)
    body = webhooks.payload(job)
    try:
        check_webhook_url(url, settings.webhook_allow_hosts)
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
            response = client.post(
                url, content=body, headers=webhooks.headers(settings.webhook_secret, job_id, body)
            )
        if 200 <= response.status_code < 300:
            log.info("webhook for job %s: attempt %d delivered to %s", job_id, attempt, url)
            return True
        reason = f"HTTP {response.status_code}"
    except (httpx.HTTPError, CodedError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    ended = job.finished_at or time.time()
    if time.time() - ended < settings.webhook_retry_s:
        delay = backoff_s(attempt)
        ctx.jobs.outbox.retry(job_id, time.time() + delay)
        log.warning(
            "webhook for job %s: attempt %d to %s failed (%s); next in %.1fs",
            job_id,
            attempt,
            url,
            reason,
            delay,
        )
    else:
        log.error(
            "webhook for job %s: attempt %d to %s failed (%s); giving up after %.0fs",
            job_id,
            attempt,
            url,
            reason,
            settings.webhook_retry_s,
        )
    return False
