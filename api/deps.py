"""Typed dependencies: handlers name what they need and get it from the app's state.

`CallerDep` is the one per-request dependency of every /v1 route: who calls (their tenant,
from the API key) and what they can reach. Dependencies cost measurable time per request in
FastAPI, so the hot routes take just this one. It only computes (no I/O), so it runs on the
event loop; `get_job` reads Redis and runs in the thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from api.state import AppState
from shared.contract import ErrorCode, Job
from shared.errors import CodedError, NotFound
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


def get_job(job_id: str, caller: CallerDep) -> Job:
    job = caller.state.jobs.get(job_id, caller.tenant)
    if job is None:
        raise NotFound(ErrorCode.job_not_found, f"no job {job_id}")
    return job


JobDep = Annotated[Job, Depends(get_job)]
