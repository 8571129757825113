"""The blob store: uploads, asset originals and generated images, addressed by key."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Protocol

import redis

from shared import keys

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


class LocalBlobStore:
    """A directory; writes go through a temp file and a rename so readers never see half a blob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not KEY_RE.match(key) or ".." in key:
            raise ValueError(f"invalid blob key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def open_blob_store(uri: str) -> BlobStore:
    if uri.startswith("s3://"):
        # The S3 backend belongs to the scale-out work; refuse loudly rather than write locally.
        raise ValueError("ASSETRAG_BLOB_URI=s3://... is not supported yet; use a directory")
    return LocalBlobStore(Path(uri.removeprefix("file://")).expanduser())


def asset_key(asset_id: str) -> str:
    return f"assets/{asset_id[:2]}/{asset_id}"


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def generated_key(job_id: str, number: int) -> str:
    return f"generated/{job_id}/{number}"


def thumbnail_key(asset_id: str, size: int) -> str:
    return f"thumbnails/{size}/{asset_id[:2]}/{asset_id}.webp"


class BlobExpiry:
    """Blobs that die with a record (uploads, generated images): a Redis sorted set of blob key
    by deadline, swept by the default-queue workers, so expired records do not leave bytes behind.
    """

    def __init__(self, client: redis.Redis, blobs: BlobStore) -> None:
        self.redis = client
        self.blobs = blobs

    def schedule(self, key: str, ttl_s: float) -> None:
        self.redis.zadd(keys.BLOB_EXPIRY, {key: time.time() + ttl_s})

    def sweep(self, now: float | None = None, batch: int = 500) -> int:
        """Deletes the blobs whose deadline passed; returns how many."""
        due: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.BLOB_EXPIRY, "-inf", now or time.time(), start=0, num=batch
        )
        for raw in due:
            self.blobs.delete(raw.decode())
        if due:
            self.redis.zrem(keys.BLOB_EXPIRY, *due)
        return len(due)
