"""`/mcp` on the API: the MCP server over streamable HTTP, behind the API's own doors.

- The key: with ASSETRAG_API_KEYS set, a request without a valid `Authorization: Bearer`
  key answers 401 here, as /v1 does (the SDK's token-verifier hook would cover only the MCP
  endpoint and speak OAuth metadata; the API's own check is one function, reused).
- Tenants, rate limits, validation and error codes: every tool calls the v1 routes of this
  very app, in-process (`httpx.ASGITransport`), with the caller's own header.
- Transport security: the SDK's DNS-rebinding guard, which answers 421 to a Host it does
  not know; ASSETRAG_MCP_ALLOWED_HOSTS / _ORIGINS add names beside localhost's.
- The session manager's task group must run for the app's lifespan (`McpMount.running`),
  or every call fails with an uninitialised task group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import key_of
from api.errors import error_response
from api.mcp.client import ServiceClient
from api.mcp.server import build_server
from shared.errors import CodedError
from shared.settings import Settings

MCP_PATH = "/mcp"
LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
# Where the tools' in-process requests say they go; never seen outside this process.
INTERNAL_URL = "http://assetrag.internal"
# Room for an example image sent as base64 (4/3 of its bytes) beside the call's JSON.
BODY_SLACK = 64 * 1024


def transport_security(settings: Settings) -> TransportSecuritySettings:
    hosts, origins = settings.mcp_allowed_hosts, settings.mcp_allowed_origins
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    # A bare host name is allowed on any port too.
    named = [form for host in hosts for form in (host, *([f"{host}:*"] if ":" not in host else []))]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOCAL_HOSTS, *named],
        allowed_origins=[*LOCAL_ORIGINS, *origins],
    )


@dataclass
class KeyCheck:
    """The API's key check in front of the MCP endpoint: 401 before any MCP work."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope["app"].state.assetrag
            try:
                key_of(state, Headers(scope=scope).get("authorization"))
            except CodedError as exc:
                response = error_response(exc.code, exc.message, exc.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class McpMount:
    """The endpoint and what it needs for the app's lifespan: the session manager, and the
    client whose requests ride the app itself."""

    def __init__(self, api: ASGIApp, settings: Settings) -> None:
        transport = httpx.ASGITransport(app=api)
        # Links handed to an agent point at the host it reached /mcp on (server.py); the
        # client's own base stays internal.
        self.client = ServiceClient(
            httpx.AsyncClient(transport=transport, base_url=INTERNAL_URL, timeout=60.0),
            settings.api_url,
        )
        self.manager = StreamableHTTPSessionManager(
            app=build_server(self.client),
            security_settings=transport_security(settings),
            max_request_body_size=settings.max_upload_bytes * 4 // 3 + BODY_SLACK,
        )
        self.endpoint = KeyCheck(self.manager.asgi_app)

    def route(self) -> Route:
        methods = ["GET", "POST", "DELETE"]
        return Route(MCP_PATH, self.endpoint, methods=methods, include_in_schema=False)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            try:
                yield
            finally:
                await self.client.aclose()
