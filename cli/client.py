"""A small synchronous client for the assetrag HTTP API (v1).

Every method maps onto one route of DESIGN.md's API table and returns the decoded JSON.
Any non-2xx answer raises :class:`ApiError`, parsed from ``{"error": {"code", "message"}}``.
Transport failures (server down, timeouts) surface as ``httpx.TransportError``.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})

DEFAULT_CHUNK_FILES = 32
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
# The server holds a ``?wait=`` request at most this long (DESIGN.md: S <= 30).
MAX_WAIT_S = 30.0
# Long-poll interval used by :meth:`AssetragClient.wait_job` when events are unavailable.
POLL_WAIT_S = 10.0


class ApiError(Exception):
    """A non-2xx answer from the API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        status = response.status_code
        code = f"http_{status}"
        message = response.reason_phrase or "request failed"
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            text = response.text.strip()
            if text:
                message = text[:500]
            return cls(status, code, message)
        if isinstance(body, dict):
            error = body.get("error")
            detail = body.get("detail")
            if isinstance(error, dict):
                code = str(error.get("code") or code)
                message = str(error.get("message") or message)
            elif isinstance(error, str):
                message = error
            elif detail is not None:  # FastAPI's default error shape
                message = detail if isinstance(detail, str) else json.dumps(detail)
        return cls(status, code, message)


def is_terminal(job: dict[str, Any]) -> bool:
    return job.get("state") in TERMINAL_STATES


def chunk_paths(
    paths: Iterable[Path],
    max_files: int = DEFAULT_CHUNK_FILES,
    max_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[list[Path]]:
    """Group files into upload requests of at most ``max_files`` files and ~``max_bytes``.

    A single file larger than ``max_bytes`` travels alone.
    """
    chunk: list[Path] = []
    size = 0
    for path in paths:
        try:
            n = path.stat().st_size
        except OSError:
            n = 0
        if chunk and (len(chunk) >= max_files or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(path)
        size += n
    if chunk:
        yield chunk


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Parse server-sent events from text lines; yields ``(event, data)`` per dispatched event."""
    event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):  # comment / keep-alive
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        # "id" and "retry" are not needed by this client
    if data:
        yield event or "message", "\n".join(data)


class AssetragClient:
    """Synchronous client over ``httpx.Client``; usable as a context manager."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        chunk_files: int = DEFAULT_CHUNK_FILES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "assetrag-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.chunk_files = chunk_files
        self.chunk_bytes = chunk_bytes
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AssetragClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request, honouring ``429 Retry-After`` a few times; raise ApiError on non-2xx."""
        attempt = 0
        while True:
            response = self._http.request(method, url, **kwargs)
            if response.status_code == 429 and attempt < self.max_retries:
                attempt += 1
                time.sleep(_retry_after(response, attempt))
                continue
            if response.is_success:
                return response
            raise ApiError.from_response(response)

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._request(method, url, **kwargs)
        if not response.content:
            return {}
        return response.json()

    def _wait_timeout(self, wait: float | None) -> httpx.Timeout | None:
        if wait is None:
            return None
        return httpx.Timeout(self.timeout + wait)

    def _submit(
        self,
        kind: str,
        body: dict[str, Any],
        wait: float | None,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        params = {"wait": _fmt_wait(wait)} if wait else None
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        kwargs: dict[str, Any] = {"json": body, "params": params, "headers": headers}
        timeout = self._wait_timeout(wait)
        if timeout is not None:
            kwargs["timeout"] = timeout
        result: dict[str, Any] = self._json("POST", f"/v1/jobs/{kind}", **kwargs)
        return result

    # -- uploads --------------------------------------------------------------------------

    def upload_batch(self, paths: list[Path]) -> list[dict[str, Any]]:
        """One ``POST /v1/uploads`` request carrying every file in ``paths``."""
        files = [("files", (p.name, p.read_bytes(), _content_type(p))) for p in paths]
        body = self._json("POST", "/v1/uploads", files=files)
        uploads: list[dict[str, Any]] = body.get("uploads", []) if isinstance(body, dict) else body
        return uploads

    def upload(
        self,
        paths: list[Path],
        on_chunk: Callable[[list[Path], list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Upload files in chunks (``chunk_files`` files / ~``chunk_bytes`` per request).

        Returns the server's upload records in the order of ``paths``; ``on_chunk`` is called
        after each request with the chunk's paths and records.
        """
        out: list[dict[str, Any]] = []
        for chunk in chunk_paths(paths, self.chunk_files, self.chunk_bytes):
            records = self.upload_batch(chunk)
            out.extend(records)
            if on_chunk is not None:
                on_chunk(chunk, records)
        return out

    # -- jobs -----------------------------------------------------------------------------

    def submit_embed(
        self,
        collection: str,
        items: list[dict[str, Any]] | None = None,
        directory: dict[str, Any] | None = None,
        wait: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"collection": collection}
        if items is not None:
            body["items"] = items
        if directory is not None:
            body["directory"] = directory
        return self._submit("embed", body, wait, idempotency_key)

    def submit_search(
        self,
        collection: str,
        queries: list[dict[str, Any]],
        top_k: int = 10,
        filter: dict[str, Any] | None = None,
        min_score: float | None = None,
        wait: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"collection": collection, "queries": queries, "top_k": top_k}
        if filter:
            body["filter"] = filter
        if min_score is not None:
            body["min_score"] = min_score
        return self._submit("search", body, wait, idempotency_key)

    def submit_generate(
        self,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /v1/jobs/generate`` with the body ``fields`` (``None`` values are dropped):
        ``prompt``, ``collection``, ``references`` (``{"asset_ids": [...]}`` or
        ``{"query": text, "top_k": k}``), ``save_to_collection``, ``count``, ``aspect_ratio``,
        ``image_size``.
        """
        body = {k: v for k, v in fields.items() if v is not None}
        return self._submit("generate", body, wait, idempotency_key)

    def get_job(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if wait:
            kwargs["params"] = {"wait": _fmt_wait(wait)}
            kwargs["timeout"] = self._wait_timeout(wait)
        job: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}", **kwargs)
        return job

    def list_jobs(
        self,
        kind: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/jobs``, newest first: ``{"data": [job, ...], "count", "next_cursor"}``."""
        params = {
            k: v
            for k, v in {"kind": kind, "state": state, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        body = self._json("GET", "/v1/jobs", params=params)
        page: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
        page["data"] = _items(body, "jobs")
        page.setdefault("next_cursor", None)
        return page

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/cancel")
        return job

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Follow ``GET /v1/jobs/{id}/events``; yields each event's job (decoded ``data:``).

        Stops after a job in a terminal state, or when the server closes the stream.
        """
        timeout = httpx.Timeout(self.timeout, read=None)
        with self._http.stream(
            "GET",
            f"/v1/jobs/{job_id}/events",
            headers={"Accept": "text/event-stream"},
            timeout=timeout,
        ) as response:
            if not response.is_success:
                response.read()
                raise ApiError.from_response(response)
            for _event, data in parse_sse(response.iter_lines()):
                try:
                    job = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(job, dict):
                    continue
                if isinstance(job.get("job"), dict):  # tolerate {"job": {...}} envelopes
                    job = job["job"]
                yield job
                if is_terminal(job):
                    return

    def wait_job(
        self,
        job_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        use_events: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Block until the job is terminal and return it, calling ``on_progress`` with each
        update. Uses server-sent events when the server offers them, else long-polls
        ``GET /v1/jobs/{id}?wait=10``. ``timeout`` (seconds) raises ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def notify(job: dict[str, Any]) -> None:
            if on_progress is not None:
                on_progress(job)

        if use_events:
            try:
                for job in self.events(job_id):
                    notify(job)
                    if is_terminal(job):
                        return job
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"job {job_id} still running after {timeout}s")
            except ApiError as exc:
                if exc.status not in (404, 405, 406, 501):
                    raise
                # no events route (or the job is unknown: get_job below says which)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass  # stream dropped: fall back to polling
        while True:
            wait = POLL_WAIT_S
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still running after {timeout}s")
                wait = max(1.0, min(wait, left))
            job = self.get_job(job_id, wait=wait)
            notify(job)
            if is_terminal(job):
                return job

    # -- collections and content ----------------------------------------------------------

    def list_collections(self) -> list[dict[str, Any]]:
        return _items(self._json("GET", "/v1/collections"), "collections")

    def get_collection(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", f"/v1/collections/{name}")
        return body

    def get_asset(self, collection: str, asset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", f"/v1/collections/{collection}/assets/{asset_id}")
        return body

    def content(self, url: str) -> bytes:
        """Bytes behind a ``content_url`` (relative to the API, or absolute).

        The API key is only sent to the API's own origin.
        """
        parts = urlsplit(url)
        if parts.scheme and parts.netloc:
            base = urlsplit(self.base_url)
            if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
                response = httpx.get(url, timeout=self.timeout, follow_redirects=True)
                if not response.is_success:
                    raise ApiError.from_response(response)
                return response.content
        return self._request("GET", url, headers={"Accept": "*/*"}).content

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", "/healthz")
        return body


def _items(body: Any, name: str) -> list[dict[str, Any]]:
    """The list in a list answer: ``{"data": [...]}`` (the API's shape), ``{name: [...]}``
    or a bare list."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("data", name, "items"):
            if isinstance(body.get(key), list):
                items: list[dict[str, Any]] = body[key]
                return items
    return []


def _fmt_wait(wait: float) -> str:
    wait = min(float(wait), MAX_WAIT_S)
    return str(int(wait)) if wait.is_integer() else f"{wait:g}"


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        delay = float(value)
    except ValueError:
        delay = float(2**attempt)
    return max(0.0, min(delay, 30.0))
