"""Typed dependencies: handlers name what they need and get it from the app's state.

`CallerDep` is the one per-request dependency of every /v1 route: who calls (their tenant,
from the API key) and what they can reach. Dependencies cost measurable time per request in
FastAPI, so the hot routes take just this one. It only computes (no I/O), so it runs on the
event loop.

`CollectionDep`, `AssetDep` and `JobDep` load what a path names, for this caller, and answer
404 when there is none: here, once, not in each handler. A collection comes from what this
process read of it lately, on the event loop, else from Milvus in the thread pool; assets
and jobs are read in the thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from shared.contract import ASSET_ID_RE, CollectionInfo, ErrorCode, Job
from shared.errors import CodedError, NotFound
from shared.milvus.records import AssetRecord
from shared.milvus.tenants import TenantVectors
from shared.ratelimit import retry_after


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.assetrag
    return state


StateDep = Annotated[AppState, Depends(get_state)]


@dataclass(frozen=True)
class Caller:
    state: AppState
    tenant: str | None  # None when API keys are off
    vectors: TenantVectors  # the collections this tenant sees


def key_of(state: AppState, authorization: str | None) -> tuple[str, str] | None:
    """(key, tenant) of a valid bearer key; None when keys are off. Keys are compared in
    constant time."""
    tenants = state.settings.tenants_by_key
    if not tenants:
        return None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        for key, tenant in tenants.items():
            if hmac.compare_digest(key.encode(), token.encode()):
                return key, tenant
    raise CodedError(
        ErrorCode.unauthorized,
        "a valid 'Authorization: Bearer <key>' header is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    state: AppState = request.app.state.assetrag
    key = key_of(state, authorization)
    if key is None:
        return Caller(state, None, TenantVectors(state.vectors, None))
    # Keys themselves never become Redis key names.
    wait_s = await state.limiter.wait_s(hashlib.sha256(key[0].encode()).hexdigest()[:32])
    if wait_s > 0:
        raise CodedError(
            ErrorCode.rate_limited,
            f"over this key's rate limit; try again in {wait_s:.1f}s",
            headers={"Retry-After": retry_after(wait_s)},
        )
    return Caller(state, key[1], TenantVectors(state.vectors, key[1]))


CallerDep = Annotated[Caller, Depends(get_caller)]


async def load_collection(caller: Caller, name: str) -> CollectionInfo:
    """The caller's collection `name` (uncounted), or 404: for the path's collection and for
    the one a job request names."""
    info = caller.vectors.cached_collection(name)
    if info is None:
        info = await run_in_threadpool(caller.vectors.find_collection, name)
    if info is None:
        raise NotFound(ErrorCode.collection_not_found, f"no collection {name}")
    return info


async def get_collection(name: str, caller: CallerDep) -> CollectionInfo:
    return await load_collection(caller, name)


CollectionDep = Annotated[CollectionInfo, Depends(get_collection)]


def get_asset(name: str, asset_id: str, _: CollectionDep, caller: CallerDep) -> AssetRecord:
    found = ASSET_ID_RE.fullmatch(asset_id)
    record = caller.vectors.get_asset(name, asset_id) if found else None
    if record is None:
        raise NotFound(ErrorCode.asset_not_found, f"no asset {asset_id} in {name}")
    return record


AssetDep = Annotated[AssetRecord, Depends(get_asset)]


def get_job(job_id: str, caller: CallerDep) -> Job:
    job = caller.state.jobs.get(job_id, caller.tenant)
    if job is None:
        raise NotFound(ErrorCode.job_not_found, f"no job {job_id}")
    return job


JobDep = Annotated[Job, Depends(get_job)]
