"""Assembles the FastAPI app; its dependencies live for exactly the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from api.errors import install_error_handlers
from api.metrics import record_request
from api.routes import collections, health, jobs, uploads
from api.state import AppState
from shared.settings import Settings, get_settings

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.open(settings or get_settings())
        app.state.assetrag = state
        await state.events.start()
        try:
            yield
        finally:
            await state.events.stop()
            state.close()

    app = FastAPI(
        title="assetrag",
        version="1",
        description="Multimodal RAG over a media asset library, as an async job service.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.middleware("http")(record_request)
    for router in (uploads.router, jobs.router, collections.router, health.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
