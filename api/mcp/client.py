"""The async client the MCP tools reach the service through: the public v1 HTTP API, with the
agent's own `Authorization` header on every request.

One client serves both doors: `/mcp` on the API rides the app itself in-process
(`httpx.ASGITransport`, no socket, yet every route, dependency and error handler runs), and
`assetrag mcp` (stdio) rides the network to a running API. The CLI's `AssetragClient` is
synchronous and cannot ride an ASGI transport, hence this small async twin.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from shared import contract
from shared.contract import ErrorCode, ErrorResponse, Job, JobKind
from shared.errors import CodedError

# One long-poll of a waiting tool: how often progress is looked at while a job runs.
POLL_S = 1.0


class ToolFailure(CodedError):
    """What a tool answers as an MCP tool error: the API's error code and message."""


def failure_of(response: httpx.Response) -> ToolFailure:
    try:
        error = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:  # not the API answering (a proxy, a load balancer)
        text = response.text.strip()[:500] or response.reason_phrase
        return ToolFailure(f"http_{response.status_code}", text)
    return ToolFailure(error.code, error.message)


class ServiceClient:
    """The v1 API as the tools need it. `public_url` is the API as an agent reaches it,
    where the links it is handed point, unless its request says otherwise."""

    def __init__(self, http: httpx.AsyncClient, public_url: str) -> None:
        self._http = http
        self.public_url = public_url.rstrip("/")

    @classmethod
    def over_network(cls, api_url: str, timeout_s: float = 60.0) -> ServiceClient:
        http = httpx.AsyncClient(base_url=api_url, timeout=timeout_s)
        return cls(http, api_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, url: str, authorization: str | None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ToolFailure("unreachable", f"cannot reach the assetrag API: {exc}") from exc
        if not response.is_success:
            raise failure_of(response)
        return response

    async def json(self, method: str, url: str, authorization: str | None, **kwargs: Any) -> Any:
        return (await self.request(method, url, authorization, **kwargs)).json()

    async def submit(self, kind: JobKind, body: dict[str, Any], authorization: str | None) -> Job:
        response = await self.request("POST", contract.submit_path(kind), authorization, json=body)
        return Job.model_validate_json(response.content)

    async def job(self, job_id: str, authorization: str | None, wait_s: float = 0) -> Job:
        params = {"wait": f"{min(wait_s, contract.MAX_WAIT_S):g}"} if wait_s > 0 else None
        timeout = httpx.Timeout((self._http.timeout.read or 60.0) + wait_s)
        response = await self.request(
            "GET", _job_url(job_id), authorization, params=params, timeout=timeout
        )
        return Job.model_validate_json(response.content)

    async def cancel(self, job_id: str, authorization: str | None) -> Job:
        response = await self.request("POST", f"{_job_url(job_id)}/cancel", authorization)
        return Job.model_validate_json(response.content)

    async def image(self, url: str, authorization: str | None) -> tuple[bytes, str]:
        """An image the API serves (content, thumbnail, a job's image): bytes and type."""
        response = await self.request("GET", url, authorization, headers={"Accept": "image/*"})
        return response.content, response.headers.get("content-type", "image/png")

    async def upload(self, name: str, data: bytes, authorization: str | None) -> str:
        """One image uploaded (POST /v1/uploads); its upload id."""
        files = [("files", (name, data, "application/octet-stream"))]
        body = await self.json("POST", contract.UPLOADS_PATH, authorization, files=files)
        return str(body["uploads"][0]["upload_id"])


def _job_url(job_id: str) -> str:
    # Checked here so that an odd id never becomes part of a path.
    if not contract.valid_token(job_id):
        raise ToolFailure(ErrorCode.job_not_found, f"no job {job_id}")
    return contract.job_path(job_id)
