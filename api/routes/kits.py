"""Brand kits: a tenant's style rules, kept in versions (every PUT makes one; `name@N` reads
one, a deleted kit's included)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, CallerDep, load_collection
from api.errors import responses
from api.paths import relative
from api.submit import require_assets
from shared import contract
from shared.contract import ErrorCode, Kit, KitBody, KitCreate, Page

router = APIRouter(prefix=contract.KITS_PATH, tags=["kits"])
E = ErrorCode
KITS = relative(router, contract.KITS_PATH)
KIT = relative(router, contract.kit_path("{ref}"))
CHECKED = (E.collection_not_found, E.asset_not_found, E.malformed_json)
RefPath = Annotated[str, Path(pattern=contract.KIT_REF_RE.pattern, description="name or name@N")]
NamePath = Annotated[str, Path(pattern=contract.KIT_NAME_RE.pattern)]


async def _check_body(caller: Caller, body: KitBody) -> None:
    """The references must be assets of a collection of the caller's."""
    await load_collection(caller, body.collection)
    await run_in_threadpool(require_assets, caller.vectors, body.collection, body.references)


@router.post(
    KITS,
    status_code=201,
    response_model=Kit,
    response_model_exclude_none=True,
    responses=responses(*CHECKED, E.kit_exists),
)
async def create_kit(body: KitCreate, caller: CallerDep) -> Kit:
    await _check_body(caller, body)
    rules = KitBody.model_validate(body.model_dump(exclude={"name"}, exclude_none=True))
    return await run_in_threadpool(caller.state.kits.create, caller.tenant, body.name, rules)


@router.get(KITS, response_model=Page[Kit], response_model_exclude_none=True, responses=responses())
def list_kits(caller: CallerDep) -> Page[Kit]:
    """Every kit of yours, at its latest version."""
    return Page[Kit](data=caller.state.kits.list(caller.tenant))


@router.get(
    KIT, response_model=Kit, response_model_exclude_none=True, responses=responses(E.kit_not_found)
)
def read_kit(ref: RefPath, caller: CallerDep) -> Kit:
    """`name`: the latest version; `name@N`: version N (readable after a delete)."""
    return caller.state.kits.get(caller.tenant, ref)


@router.get(
    relative(router, contract.kit_versions_path("{ref}")),
    response_model=Page[Kit],
    response_model_exclude_none=True,
    responses=responses(E.kit_not_found),
)
def list_kit_versions(ref: NamePath, caller: CallerDep) -> Page[Kit]:
    return Page[Kit](data=caller.state.kits.versions(caller.tenant, ref))


@router.put(
    KIT,
    response_model=Kit,
    response_model_exclude_none=True,
    responses=responses(*CHECKED, E.kit_not_found),
)
async def update_kit(ref: NamePath, body: KitBody, caller: CallerDep) -> Kit:
    """A new version of the kit; the old ones stay readable as `name@N`."""
    await _check_body(caller, body)
    return await run_in_threadpool(caller.state.kits.update, caller.tenant, ref, body)


@router.delete(KIT, status_code=204, response_class=Response, responses=responses(E.kit_not_found))
def delete_kit(ref: NamePath, caller: CallerDep) -> Response:
    """The kit is no longer listed or usable by name; its versions stay readable as
    `name@N`, for the lineage of what was made with it."""
    caller.state.kits.delete(caller.tenant, ref)
    return Response(status_code=204)
