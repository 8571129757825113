"""Where item bytes come from: uploads, server paths under the library roots, and public URLs.

Each reader refuses with a ``SourceRejected`` carrying a stable code, which becomes the
item's error in a job (or the request's error at submit).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import redis

from shared import keys
from shared.blobs import BlobExpiry, BlobNotFound, BlobStore, upload_key
from shared.contract import ErrorCode, Upload, new_token, valid_token
from shared.errors import InputRejected

MAX_REDIRECTS = 5


class SourceRejected(InputRejected):
    """A path or URL the service will not read, or an upload that is gone."""


class StoredUpload(Upload):
    """An upload's record as kept: the contract's fields plus its owner."""

    tenant: str | None = None

    def public(self) -> Upload:
        return Upload.model_validate(self.model_dump(exclude={"tenant"}))


class UploadRegistry:
    """Upload records in Redis (they expire); their bytes in the blob store."""

    def __init__(
        self, client: redis.Redis, blobs: BlobStore, ttl_s: int, expiry: BlobExpiry
    ) -> None:
        self.redis = client
        self.blobs = blobs
        self.expiry = expiry
        self.ttl_s = ttl_s

    def add(self, upload: StoredUpload, data: bytes) -> None:
        self.blobs.put(upload_key(upload.upload_id), data)
        self.expiry.schedule(upload_key(upload.upload_id), self.ttl_s)
        self.redis.set(keys.upload(upload.upload_id), upload.model_dump_json(), ex=self.ttl_s)

    def get(self, upload_id: str, tenant: str | None = None) -> StoredUpload | None:
        if not valid_token(upload_id):
            return None
        raw = self.redis.get(keys.upload(upload_id))
        if raw is None:
            return None
        upload = StoredUpload.model_validate_json(raw)
        return upload if upload.tenant == tenant else None

    def missing(self, upload_ids: list[str], tenant: str | None = None) -> list[str]:
        if not upload_ids:
            return []
        raws = self.redis.mget([keys.upload(u) for u in upload_ids])
        return [
            uid
            for uid, raw in zip(upload_ids, raws, strict=True)
            if raw is None or json.loads(raw).get("tenant") != tenant
        ]

    def read(self, upload_id: str, tenant: str | None = None) -> tuple[bytes, StoredUpload]:
        upload = self.get(upload_id, tenant)
        if upload is None:
            raise SourceRejected(
                ErrorCode.upload_not_found, f"upload {upload_id} does not exist or expired"
            )
        try:
            return self.blobs.get(upload_key(upload_id)), upload
        except BlobNotFound as exc:
            raise SourceRejected(
                ErrorCode.upload_not_found, f"upload {upload_id} has no bytes"
            ) from exc


def new_upload_id() -> str:
    return new_token()


def resolve_library_path(raw: str, roots: list[Path]) -> Path:
    """The real path (symlinks resolved) if it lies under a library root, else a refusal."""
    if not roots:
        raise SourceRejected(
            ErrorCode.paths_disabled, "server paths are refused: ASSETRAG_LIBRARY_ROOTS is not set"
        )
    try:
        path = Path(raw).expanduser()
        real = path.resolve() if path.is_absolute() else (roots[0] / path).resolve()
        if not any(real.is_relative_to(root) for root in roots):
            raise SourceRejected(
                ErrorCode.path_outside_roots, f"{raw} is outside the library roots"
            )
        exists = real.exists()
    except (OSError, RuntimeError, ValueError) as exc:  # too long, a symlink loop, a NUL
        message = f"{raw[:200]} cannot be read as a path ({type(exc).__name__})"
        raise SourceRejected(ErrorCode.file_not_found, message) from exc
    if not exists:
        raise SourceRejected(ErrorCode.file_not_found, f"{raw} does not exist")
    return real


def read_library_file(raw: str, roots: list[Path], max_bytes: int) -> tuple[bytes, Path]:
    """The bytes of a file under the library roots, and its real path."""
    path = resolve_library_path(raw, roots)
    if not path.is_file():
        raise SourceRejected(ErrorCode.not_a_file, f"{raw} is not a file")
    if path.stat().st_size > max_bytes:
        raise SourceRejected(ErrorCode.file_too_large, f"{raw} is over the {max_bytes}-byte limit")
    return path.read_bytes(), path


def expand_directory(
    raw: str, pattern: str, recursive: bool, roots: list[Path], limit: int
) -> list[Path]:
    """Files under a library folder matching a glob, sorted, never leaving the roots."""
    base = resolve_library_path(raw, roots)
    if not base.is_dir():
        raise SourceRejected(ErrorCode.not_a_directory, f"{raw} is not a directory")
    found: list[Path] = []
    for path in _walk(base, recursive):
        if not fnmatch.fnmatch(path.name, pattern):
            continue
        real = path.resolve()
        if not any(real.is_relative_to(root) for root in roots):
            continue  # a symlink out of the library is skipped, never followed
        found.append(path)
        if len(found) > limit:
            raise SourceRejected(
                ErrorCode.too_many_items, f"{raw} holds more than {limit} matching files"
            )
    return sorted(found)


def _walk(base: Path, recursive: bool) -> Iterator[Path]:
    if not recursive:
        yield from (p for p in base.iterdir() if p.is_file())
        return
    for folder, _dirs, files in os.walk(base):
        yield from (Path(folder) / name for name in files)


def check_public_host(host: str, port: int) -> None:
    """Refuses hosts that resolve to loopback, private, link-local, multicast or reserved space."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SourceRejected(ErrorCode.unresolvable_host, f"cannot resolve {host}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise SourceRejected(
                ErrorCode.forbidden_address, f"{host} resolves to a non-public address ({address})"
            )


def check_url(url: str, allow_private: bool = False) -> None:
    """An http(s) URL to a public address (any address where private URLs are allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceRejected(ErrorCode.unsupported_url, f"only http(s) URLs are fetched: {url}")
    if not allow_private:
        # Checked before connecting; DNS answers could still change in between, which a
        # deployment closes with an egress proxy.
        check_public_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def fetch_url(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """GET with every redirect re-checked, a size cap and a total timeout."""
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow_private)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise SourceRejected(
                            ErrorCode.fetch_failed, f"{url} answered HTTP {response.status_code}"
                        )
                    return _read_capped(response, max_bytes, url)
            except httpx.HTTPError as exc:
                raise SourceRejected(ErrorCode.fetch_failed, f"{url}: {exc}") from exc
    raise SourceRejected(
        ErrorCode.too_many_redirects, f"{url} redirected more than {MAX_REDIRECTS} times"
    )


def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise SourceRejected(
                ErrorCode.file_too_large, f"{url} is over the {max_bytes}-byte limit"
            )
        chunks.append(chunk)
    return b"".join(chunks)
