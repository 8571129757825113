"""Batches that fail for a while (Milvus or the blob store down, a restart) are tried again."""

from __future__ import annotations

import logging
from collections.abc import Callable

import tenacity

from shared.contract import ErrorCode
from shared.errors import CodedError, Unavailable
from workers.context import WorkerContext

log = logging.getLogger("assetrag.worker")


def with_retries(
    ctx: WorkerContext,
    job_id: str,
    batch_id: str,
    attempt: Callable[[], object],
    give_up: Callable[[CodedError], None],
) -> None:
    """Runs `attempt` again with backoff for ASSETRAG_BATCH_RETRY_S, holding the batch's
    message so the watchdog sees it held; then `give_up` fails the batch's items and the job
    still ends. A coded error that is not an outage (a collection gone, a kit deleted) is an
    answer, not worth waiting for: it gives up at once. Attempts must be idempotent (every
    batch writes by content-hash id)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(worth_retrying),
        stop=tenacity.stop_after_delay(ctx.settings.batch_retry_s),
        wait=tenacity.wait_exponential(multiplier=1, max=15),
        before_sleep=lambda state: log.warning(
            "job %s batch %s failed (%s); trying again in %.0fs",
            job_id,
            batch_id,
            state.outcome.exception() if state.outcome else "?",
            state.next_action.sleep if state.next_action else 0,
        ),
        reraise=True,
    )
    try:
        retrying(attempt)
    except Exception as exc:
        log.exception("job %s batch %s failed for good", job_id, batch_id)
        # A part that stayed down says so (blob_store_unavailable, ...), as does any other coded
        # error (collection_not_found, ...); anything else is ours.
        if isinstance(exc, CodedError):
            give_up(exc)
        else:
            give_up(CodedError(ErrorCode.internal_error, f"{type(exc).__name__}: {exc}"))


def worth_retrying(exc: BaseException) -> bool:
    """An outage (Unavailable) or an unexpected error may pass; another coded error will not."""
    return isinstance(exc, Unavailable) or not isinstance(exc, CodedError)
