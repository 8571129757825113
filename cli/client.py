"""A small synchronous client for the assetrag HTTP API (v1), speaking the shared contract.

Requests go out as the contract's request models and answers come back as its response
models. A non-2xx answer raises :class:`ApiError`, read from the contract's error body.
Transport failures (server down, timeouts) surface as ``httpx.TransportError``.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from shared import contract
from shared.contract import (
    Cluster,
    CollectionInfo,
    CollectionVersion,
    ErrorResponse,
    Job,
    JobKind,
    JobState,
    JobSummary,
    Kit,
    KitBody,
    KitCreate,
    Page,
    ReindexRequest,
    ResultLine,
    Upload,
    UploadsResponse,
)
from shared.errors import CodedError

DEFAULT_CHUNK_FILES = 32
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
# How long one long-poll asks the server to hold, when the event stream drops.
POLL_WAIT_S = 10.0
RETRIES_ON_429 = 3
M = TypeVar("M", bound=BaseModel)


class ApiError(CodedError):
    """A non-2xx answer from the API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = ErrorResponse.model_validate_json(response.content).error
        except ValidationError:  # not the API answering: a proxy, a load balancer
            text = response.text.strip()[:500] or response.reason_phrase
            return cls(response.status_code, f"http_{response.status_code}", text)
        return cls(response.status_code, error.code, error.message)


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


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events from text lines: one ``(event, data)`` per dispatched event."""
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
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


class AssetragClient:
    """Synchronous client over ``httpx.Client``; usable as a context manager.

    ``transport`` replaces the network (tests pass the app's own, in-process).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "assetrag-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    # ── plumbing ───────────────────────────────────────────────────────────────────────────

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AssetragClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request, honouring ``429 Retry-After`` a few times; ApiError on non-2xx."""
        for attempt in range(RETRIES_ON_429 + 1):
            response = self._http.request(method, url, **kwargs)
            if response.status_code != 429 or attempt == RETRIES_ON_429:
                break
            time.sleep(_retry_after(response, attempt + 1))
        if not response.is_success:
            raise ApiError.from_response(response)
        return response

    def _model(self, model: type[M], method: str, url: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._request(method, url, **kwargs).content)

    def _waiting(self, wait: float | None) -> dict[str, Any]:
        """Request options that hold the answer up to `wait` seconds on the server."""
        if not wait:
            return {}
        wait = min(float(wait), contract.MAX_WAIT_S)
        return {"params": {"wait": f"{wait:g}"}, "timeout": httpx.Timeout(self.timeout + wait)}

    # ── uploads and jobs ───────────────────────────────────────────────────────────────────

    def upload(self, paths: list[Path]) -> list[Upload]:
        """One ``POST /v1/uploads`` carrying every file in ``paths``."""
        files = [("files", (p.name, p.read_bytes(), _content_type(p))) for p in paths]
        return self._model(UploadsResponse, "POST", contract.UPLOADS_PATH, files=files).uploads

    def submit(
        self,
        kind: JobKind,
        request: BaseModel,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job; with `wait` the answer is the finished job when it finishes in time."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = request.model_dump(mode="json", exclude_none=True)
        options = self._waiting(wait)
        return self._model(
            Job, "POST", contract.submit_path(kind), json=body, headers=headers, **options
        )

    def get_job(self, job_id: str, wait: float | None = None) -> Job:
        return self._model(Job, "GET", contract.job_path(job_id), **self._waiting(wait))

    def list_jobs(
        self,
        kind: JobKind | None = None,
        state: JobState | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JobSummary]:
        """Newest first."""
        params = {"kind": kind, "state": state, "limit": limit, "cursor": cursor}
        given = {k: str(v) for k, v in params.items() if v is not None}
        return self._model(Page[JobSummary], "GET", contract.JOBS_PATH, params=given)

    def results(self, job_id: str) -> list[ResultLine]:
        """The finished job's results file, one line per item."""
        response = self._request("GET", contract.results_path(job_id))
        return [ResultLine.model_validate_json(line) for line in response.text.splitlines() if line]

    def cancel_job(self, job_id: str) -> Job:
        return self._model(Job, "POST", f"{contract.job_path(job_id)}/cancel")

    def events(self, job_id: str) -> Iterator[Job]:
        """Follow the job's server-sent events; the last one yielded is the finished job."""
        timeout = httpx.Timeout(self.timeout, read=None)
        url = f"{contract.job_path(job_id)}/events"
        headers = {"Accept": "text/event-stream"}
        with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                raise ApiError.from_response(response)
            for _event, data in parse_sse(response.iter_lines()):
                job = Job.model_validate_json(data)
                yield job
                if job.finished:
                    return

    def wait_job(self, job_id: str, on_progress: Callable[[Job], None] | None = None) -> Job:
        """Block until the job is finished and return it, calling ``on_progress`` with each
        update. Follows the event stream; if it drops, long-polls the job instead."""
        notify = on_progress or (lambda _job: None)
        try:
            for job in self.events(job_id):
                notify(job)
                if job.finished:
                    return job
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the stream dropped (a proxy, a restarted API): poll instead
        while True:
            job = self.get_job(job_id, wait=POLL_WAIT_S)
            notify(job)
            if job.finished:
                return job

    # ── collections and content ────────────────────────────────────────────────────────────

    def list_collections(self) -> list[CollectionInfo]:
        return self._model(Page[CollectionInfo], "GET", contract.COLLECTIONS_PATH).data

    def get_collection(self, name: str) -> CollectionInfo:
        return self._model(CollectionInfo, "GET", contract.collection_path(name))

    def clusters(self, job_id: str) -> Iterator[Cluster]:
        """Every cluster of a finished duplicates job, largest first, page by page."""
        cursor: str | None = None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = self._model(Page[Cluster], "GET", contract.clusters_path(job_id), params=params)
            yield from page.data
            if not (cursor := page.next_cursor):
                return

    def reindex(self, collection: str, request: ReindexRequest) -> Job:
        body = request.model_dump(mode="json", exclude_none=True)
        return self._model(Job, "POST", contract.reindex_path(collection), json=body)

    def versions(self, collection: str) -> list[CollectionVersion]:
        return self._model(Page[CollectionVersion], "GET", contract.versions_path(collection)).data

    # ── brand kits ─────────────────────────────────────────────────────────────────────────

    def create_kit(self, kit: KitCreate) -> Kit:
        body = kit.model_dump(mode="json", exclude_none=True)
        return self._model(Kit, "POST", contract.KITS_PATH, json=body)

    def update_kit(self, name: str, body: KitBody) -> Kit:
        rules = body.model_dump(mode="json", exclude_none=True)
        return self._model(Kit, "PUT", contract.kit_path(name), json=rules)

    def get_kit(self, ref: str) -> Kit:
        return self._model(Kit, "GET", contract.kit_path(ref))

    def kit_versions(self, name: str) -> list[Kit]:
        return self._model(Page[Kit], "GET", contract.kit_versions_path(name)).data

    def list_kits(self) -> list[Kit]:
        return self._model(Page[Kit], "GET", contract.KITS_PATH).data

    def delete_kit(self, name: str) -> None:
        self._request("DELETE", contract.kit_path(name))

    def drop_version(self, collection: str, version: int) -> None:
        self._request("DELETE", f"{contract.versions_path(collection)}/{version}")

    def content(self, url: str) -> bytes:
        """Bytes behind a ``content_url`` (relative to the API, or absolute).

        The API key is only sent to the API's own origin.
        """
        parts = urlsplit(url)
        base = urlsplit(self.base_url)
        if parts.netloc and (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            response = httpx.get(url, timeout=self.timeout, follow_redirects=True)
            if not response.is_success:
                raise ApiError.from_response(response)
            return response.content
        return self._request("GET", url, headers={"Accept": "*/*"}).content


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        delay = float(response.headers.get("Retry-After", ""))
    except ValueError:
        delay = float(2**attempt)
    return max(0.0, min(delay, 30.0))
