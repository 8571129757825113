"""Near-duplicate clusters: submit a duplicates job, page through its clusters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import CallerDep, JobDep, StateDep
from api.errors import responses
from api.long_poll import WaitQuery, answer
from api.paths import JOB_ID, relative
from api.submit import IdempotencyHeader, accept_duplicates, submit_responses
from shared import contract
from shared.contract import Cluster, DuplicatesRequest, ErrorCode, Job, JobKind, Page
from shared.errors import Conflict

router = APIRouter(prefix=contract.JOBS_PATH, tags=["jobs"])
E = ErrorCode
PAGE_MAX = 1000


@router.post(
    relative(router, contract.submit_path(JobKind.duplicates)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(E.collection_not_found),
)
async def submit_duplicates(
    body: DuplicatesRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Clusters of near-duplicate assets in a collection: every pair at least `threshold`
    similar (cosine) joins a cluster. The result holds the largest clusters; the rest page
    through GET /v1/jobs/{id}/clusters."""
    job = await accept_duplicates(caller, body, idempotency_key)
    return await answer(caller.state, job, wait)


@router.get(
    relative(router, contract.clusters_path(JOB_ID)),
    response_model=Page[Cluster],
    responses=responses(E.job_not_found, E.job_kind_mismatch),
)
def list_clusters(
    job: JobDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,9}$", description="from a previous page")
    ] = None,
) -> Page[Cluster]:
    """A finished duplicates job's clusters, largest first (empty while it runs)."""
    if job.kind != JobKind.duplicates:
        raise Conflict(E.job_kind_mismatch, f"job {job.id} is a {job.kind.value} job")
    start = int(cursor or 0)
    found = state.jobs.clusters(job.id, start, limit + 1)
    more = len(found) > limit
    return Page[Cluster](data=found[:limit], next_cursor=str(start + limit) if more else None)
