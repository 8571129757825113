"""The blob store and the expiry of blobs that belong to expiring records."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared.blobs import BlobExpiry, BlobNotFound, LocalBlobStore
from shared.sources import Upload, UploadRegistry


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put("assets/ab/abc", b"x")
    assert store.get("assets/ab/abc") == b"x"
    for bad in ["../etc/passwd", "/abs", "a/../../b", "a//b"]:
        with pytest.raises(ValueError):
            store.put(bad, b"x")
    with pytest.raises(BlobNotFound):
        store.get("assets/none")


def test_expired_upload_bytes_are_swept(tmp_path: Path, redis_client: redis.Redis) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    expiry = BlobExpiry(redis_client, store)
    uploads = UploadRegistry(redis_client, store, ttl_s=3600, expiry=expiry)
    upload = Upload(
        upload_id="u" * 24, filename="a.png", bytes=1, sha256="0" * 64, content_type="image/png"
    )
    uploads.add(upload, b"x")
    expiry.schedule("generated/job/0", 0)
    store.put("generated/job/0", b"png")
    assert expiry.sweep() == 1  # only the one already due
    assert not store.exists("generated/job/0") and store.exists(f"uploads/{'u' * 24}")
    assert expiry.sweep(now=10**12) == 1
    assert not store.exists(f"uploads/{'u' * 24}")
    assert expiry.sweep(now=10**12) == 0
