"""The blob store: uploads, asset originals, generated images and thumbnails, addressed by key.

Two backends behind one interface: a local directory (the default) and an S3-compatible
bucket (`s3://bucket/prefix`, through boto3), so API and workers on different machines share
blobs through nothing but the URI. Failures name the blob key, never a local path, and a
store that cannot be reached is `blob_store_unavailable` (503, worth retrying).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import redis

from shared import keys
from shared.contract import ErrorCode
from shared.errors import Unavailable

if TYPE_CHECKING:
    from shared.settings import Settings

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")
T = TypeVar("T")


class BlobNotFound(KeyError):
    pass


class BlobStoreUnavailable(Unavailable):
    """The store did not answer (or refused us): the request may succeed later."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(
            ErrorCode.blob_store_unavailable,
            f"the blob store could not serve {key}: {reason}; try again shortly",
            {"Retry-After": "5"},
        )


def _check_key(key: str) -> str:
    if not KEY_RE.match(key) or ".." in key:
        raise ValueError(f"invalid blob key: {key!r}")
    return key


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
        return self.root / _check_key(key)

    @contextmanager
    def _io(self, key: str) -> Iterator[None]:
        """A disk error (full, read-only, unmounted) names the key, not the local path."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise BlobStoreUnavailable(key, exc.strerror or type(exc).__name__) from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with self._io(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with self._io(key):
                return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._io(key):
            return path.is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._io(key):
            path.unlink(missing_ok=True)


class S3BlobStore:
    """A bucket (and key prefix) on any S3-compatible store: AWS, MinIO, Ceph, Swift's s3api.

    Objects are written whole by one PUT, so readers never see half a blob. The client
    fails fast (a few seconds, three attempts) rather than hold an API request for a minute.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> S3BlobStore:
        # boto3 costs ~0.3 s to import: only processes that use S3 pay it.
        import boto3
        from botocore.config import Config

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        secret = settings.aws_secret_access_key
        token = settings.aws_session_token
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            aws_session_token=token.get_secret_value() if token else None,
            config=Config(
                connect_timeout=min(settings.s3_timeout_s, 5.0),
                read_timeout=settings.s3_timeout_s,
                retries={"max_attempts": 3, "mode": "standard"},
                # Custom endpoints (MinIO, a test server) rarely have per-bucket DNS names.
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
                max_pool_connections=32,
            ),
        )
        return cls(client, bucket, prefix)

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _call(self, key: str, call: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if str(error.get("Code")) in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFound(key) from exc
            reason = f"{error.get('Code', 'error')} from s3://{self.bucket}"
            raise BlobStoreUnavailable(key, reason) from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(key, f"{type(exc).__name__} (s3://{self.bucket})") from exc

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self._call(key, lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=data))

    def get(self, key: str) -> bytes:
        name = self._key(key)

        def read() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with body:
                return bytes(body.read())

        return self._call(key, read)

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            self._call(key, lambda: self.client.head_object(Bucket=self.bucket, Key=name))
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._key(key)  # S3 deletes are idempotent: a missing key is no error
        self._call(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=name))


def open_blob_store(settings: Settings) -> BlobStore:
    uri = settings.resolved_blob_uri
    if uri.startswith("s3://"):
        return S3BlobStore.from_uri(uri, settings)
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
