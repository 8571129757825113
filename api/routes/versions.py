"""A collection's versions: re-index into a new one (another model, or a rebuild), list them,
drop one that no longer answers."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, CallerDep
from api.errors import responses
from api.routes.jobs import (
    FINISHED_IN_TIME,
    WEBHOOK_ERRORS,
    IdempotencyHeader,
    WaitQuery,
    answer,
    enqueue,
    require_collection,
)
from shared import contract
from shared.contract import (
    CollectionVersion,
    ErrorCode,
    Job,
    JobKind,
    Page,
    ReindexJob,
    ReindexRequest,
)
from shared.errors import Conflict
from shared.rules import check_model_allowed
from shared.tasks import PLAN_REINDEX

router = APIRouter(tags=["collections"])
E = ErrorCode
NAME = "{name}"


def _not_running(caller: Caller, name: str) -> None:
    running = caller.state.reindexing.running(caller.vectors.physical(name))
    if running is not None:
        raise Conflict(
            E.reindex_running,
            f"{name} is being re-indexed into version {running.version} by job "
            f"{running.job_id}; wait for it or cancel it",
        )


@router.post(
    contract.reindex_path(NAME),
    status_code=202,
    response_model=Job,
    responses={
        **FINISHED_IN_TIME,
        **responses(
            E.collection_not_found,
            E.model_not_allowed,
            E.reindex_running,
            *WEBHOOK_ERRORS,
            E.idempotency_key_reused,
            E.malformed_json,
        ),
    },
)
async def submit_reindex(
    name: str,
    body: ReindexRequest,
    caller: CallerDep,
    idempotency_key: IdempotencyHeader = None,
    wait: WaitQuery = None,
) -> Response:
    """Builds the collection's next version from its originals with `model` (or the same
    model: a rebuild that gains keyword search), while searches keep answering from the
    current one; then moves the collection's name to it in one step."""
    check_model_allowed(body.model, caller.state.settings.allowed_models)
    await require_collection(caller, name)
    await run_in_threadpool(_not_running, caller, name)
    job_body = ReindexJob(collection=name, **body.model_dump(exclude_none=True))
    job = await enqueue(caller, JobKind.reindex, PLAN_REINDEX, job_body, idempotency_key)
    return await answer(caller.state, job, wait)


@router.get(
    contract.versions_path(NAME),
    response_model=Page[CollectionVersion],
    responses=responses(E.collection_not_found),
)
def list_versions(name: str, caller: CallerDep) -> Page[CollectionVersion]:
    """Every version of the collection, oldest first; `current` marks the one that answers."""
    return Page[CollectionVersion](data=caller.vectors.versions(name))


@router.delete(
    contract.versions_path(NAME) + "/{version}",
    status_code=204,
    response_class=Response,
    responses=responses(
        E.collection_not_found, E.version_not_found, E.version_in_use, E.reindex_running
    ),
)
def drop_version(name: str, caller: CallerDep, version: int = Path(ge=1, le=1_000_000)) -> Response:
    """Drops a version that does not answer (one a re-index replaced, or left half-built)."""
    caller.vectors.get_collection(name, with_count=False)
    running = caller.state.reindexing.running(caller.vectors.physical(name))
    if running is not None and running.version == version:
        raise Conflict(E.reindex_running, f"version {version} is being built by {running.job_id}")
    caller.vectors.drop_version(name, version)
    return Response(status_code=204)
