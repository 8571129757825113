"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from api.metrics import refresh_fleet_gauges
from shared.contract import Readiness
from shared.tasks import QUEUES

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: see which part"}},
)
def readyz(state: StateDep) -> JSONResponse:
    """Ready when Redis and Milvus answer and each of ASSETRAG_READY_QUEUES (every queue by
    default) has a live, consuming worker; every queue's workers are listed either way."""
    try:
        state.redis.ping()
        redis_status = "ok"
        live = state.heartbeat.live_queues()
        queues = {q: live.get(q, []) for q in QUEUES}
    except Exception as exc:  # any failure is a readiness answer, not a 500
        redis_status, queues = f"error: {exc}", {}
    try:
        state.vectors.ping()
        milvus_status = "ok"
    except Exception as exc:
        milvus_status = f"error: {exc}"
    needed = state.settings.ready_queues
    ready = redis_status == milvus_status == "ok" and all(queues.get(q) for q in needed)
    body = Readiness(ready=ready, redis=redis_status, milvus=milvus_status, queues=queues)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: StateDep) -> Response:
    refresh_fleet_gauges(state.redis)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
