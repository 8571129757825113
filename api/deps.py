"""Typed dependencies: handlers name what they need and get it from the app's state."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from api.errors import ApiError
from api.state import AppState
from shared.jobs import Job
from shared.vectors import TenantVectors


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.assetrag
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_tenant(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> str | None:
    """The caller's tenant; None when keys are off. Keys are compared in constant time."""
    tenants = state.settings.tenants_by_key
    if not tenants:
        return None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        for key, tenant in tenants.items():
            if hmac.compare_digest(key.encode(), token.encode()):
                return tenant
    raise ApiError(
        401,
        "unauthorized",
        "a valid 'Authorization: Bearer <key>' header is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


TenantDep = Annotated[str | None, Depends(get_tenant)]


def get_vectors(state: StateDep, tenant: TenantDep) -> TenantVectors:
    return TenantVectors(state.vectors, tenant)


VectorsDep = Annotated[TenantVectors, Depends(get_vectors)]


def get_job(job_id: str, state: StateDep, tenant: TenantDep) -> Job:
    job = state.jobs.get(job_id)
    if job is None or job.tenant != tenant:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job


JobDep = Annotated[Job, Depends(get_job)]
