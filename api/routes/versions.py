"""A collection's versions: re-index into a new one (another model, or a rebuild), list them,
drop one that no longer answers."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from api.deps import CallerDep, CollectionDep
from api.errors import responses
from api.long_poll import WaitQuery, answer
from api.paths import NAME, relative
from api.submit import IdempotencyHeader, accept_reindex, running_reindex, submit_responses
from shared import contract
from shared.contract import CollectionVersion, ErrorCode, Job, Page, ReindexRequest
from shared.errors import Conflict

router = APIRouter(prefix=contract.COLLECTIONS_PATH, tags=["collections"])
E = ErrorCode
VERSIONS = relative(router, contract.versions_path(NAME))


@router.post(
    relative(router, contract.reindex_path(NAME)),
    status_code=202,
    response_model=Job,
    responses=submit_responses(E.collection_not_found, E.model_not_allowed, E.reindex_running),
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
    job = await accept_reindex(caller, name, body, idempotency_key)
    return await answer(caller.state, job, wait)


@router.get(
    VERSIONS,
    response_model=Page[CollectionVersion],
    responses=responses(E.collection_not_found),
)
def list_versions(name: str, caller: CallerDep) -> Page[CollectionVersion]:
    """Every version of the collection, oldest first; `current` marks the one that answers."""
    return Page[CollectionVersion](data=caller.vectors.versions(name))


@router.delete(
    VERSIONS + "/{version}",
    status_code=204,
    response_class=Response,
    responses=responses(
        E.collection_not_found, E.version_not_found, E.version_in_use, E.reindex_running
    ),
)
def drop_version(
    name: str, _: CollectionDep, caller: CallerDep, version: int = Path(ge=1, le=1_000_000)
) -> Response:
    """Drops a version that does not answer (one a re-index replaced, or left half-built)."""
    running = running_reindex(caller, name)
    if running is not None and running.version == version:
        raise Conflict(E.reindex_running, f"version {version} is being built by {running.job_id}")
    caller.vectors.drop_version(name, version)
    return Response(status_code=204)
