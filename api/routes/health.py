"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from shared.tasks import QUEUES

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        state.redis.ping()
        checks["redis"] = "ok"
        live = state.heartbeat.live_queues()
        checks["queues"] = {q: live.get(q, []) for q in QUEUES}
    except Exception as exc:  # any failure is a readiness answer, not a 500
        checks["redis"] = f"error: {exc}"
        checks["queues"] = {}
    try:
        state.vectors.ping()
        checks["milvus"] = "ok"
    except Exception as exc:
        checks["milvus"] = f"error: {exc}"
    ready = (
        checks["redis"] == "ok"
        and checks["milvus"] == "ok"
        and all(checks["queues"].get(q) for q in QUEUES)
    )
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
