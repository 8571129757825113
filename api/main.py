"""Assembles the FastAPI app; its dependencies live for exactly the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from api.errors import install_error_handlers
from api.mcp.http import McpMount
from api.metrics import RequestMetrics
from api.openapi import publish_openapi
from api.routes import ROUTERS
from api.state import AppState
from shared.settings import Settings, get_settings

STATIC = Path(__file__).parent / "static"


class UiFiles(StaticFiles):
    """The UI's modules, revalidated on every load (a cheap 304 with their ETag), so that an
    upgraded server never runs old modules beside new ones."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(settings: Settings | None = None) -> FastAPI:
    config = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.open(config)
        app.state.assetrag = state
        await state.events.start()
        try:
            async with mcp.running():  # /mcp's session manager lives as long as the app
                yield
        finally:
            await state.events.stop()
            await state.aclose()

    app = FastAPI(
        title="assetrag",
        version="1",
        description="Multimodal RAG over a media asset library, as an async job service.",
        lifespan=lifespan,
        # We export Prometheus metrics, not OpenTelemetry; FastAPI's native telemetry would
        # look up the global tracer, meter and logger providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    publish_openapi(app, config)
    app.add_middleware(RequestMetrics)
    for router in ROUTERS:
        app.include_router(router)
    # /mcp: the MCP server (streamable HTTP); its tools call the routes above in-process.
    mcp = McpMount(app, config)
    app.router.routes.append(mcp.route())

    # The web UI: static files that speak the public v1 API like any other client.
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", UiFiles(directory=STATIC), name="ui")

    return app
