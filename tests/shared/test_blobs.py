"""The blob store (a directory, or an S3 bucket on a real S3-protocol server) and the expiry
of blobs that belong to expiring records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.stack import free_port
from shared.blobs import (
    BlobExpiry,
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    LocalBlobStore,
    S3BlobStore,
    open_blob_store,
)
from shared.settings import Settings
from shared.sources import Upload, UploadRegistry
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY


def s3_settings(uri: str, endpoint: str, **overrides: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        blob_uri=uri,
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        **overrides,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        local = Settings(_env_file=None, blob_uri=str(tmp_path / "blobs"))  # type: ignore[call-arg]
        yield open_blob_store(local)
        return
    server = request.getfixturevalue("s3_server")
    bucket = server.new_bucket()
    yield open_blob_store(s3_settings(f"s3://{bucket}/some/prefix", server.endpoint))


def test_put_get_exists_delete(store: BlobStore) -> None:
    store.put("assets/ab/abc", b"x" * 1000)
    assert store.get("assets/ab/abc") == b"x" * 1000
    assert store.exists("assets/ab/abc") and not store.exists("assets/ab/abd")
    store.put("assets/ab/abc", b"y")  # overwrite
    assert store.get("assets/ab/abc") == b"y"
    store.delete("assets/ab/abc")
    store.delete("assets/ab/abc")  # deleting twice is no error
    assert not store.exists("assets/ab/abc")
    with pytest.raises(BlobNotFound):
        store.get("assets/ab/abc")


def test_keys_cannot_escape_the_store(store: BlobStore) -> None:
    for bad in ["../etc/passwd", "/abs", "a/../../b", "a//b", ""]:
        with pytest.raises(ValueError):
            store.put(bad, b"x")
        with pytest.raises(ValueError):
            store.get(bad)


def test_s3_objects_live_under_the_prefix(s3_server: Any) -> None:
    bucket = s3_server.new_bucket()
    store = open_blob_store(s3_settings(f"s3://{bucket}/lib/v1/", s3_server.endpoint))
    assert isinstance(store, S3BlobStore)
    store.put("uploads/u1", b"1")
    store.put("thumbnails/128/ab/abc.webp", b"2")
    assert sorted(s3_server.keys(bucket)) == [
        "lib/v1/thumbnails/128/ab/abc.webp",
        "lib/v1/uploads/u1",
    ]
    bare = open_blob_store(s3_settings(f"s3://{bucket}", s3_server.endpoint))
    bare.put("uploads/u2", b"3")
    assert "uploads/u2" in s3_server.keys(bucket)


def test_expired_bytes_are_swept(store: BlobStore, redis_client: redis.Redis) -> None:
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


def test_an_unreachable_s3_store_is_unavailable_and_fails_fast() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    store = open_blob_store(s3_settings("s3://bucket/p", nobody, s3_timeout_s=1))
    for call in (lambda: store.get("uploads/u1"), lambda: store.put("uploads/u1", b"x")):
        with pytest.raises(BlobStoreUnavailable) as caught:
            call()
        assert caught.value.code == "blob_store_unavailable"
        assert "uploads/u1" in caught.value.message
        assert caught.value.headers == {"Retry-After": "5"}


def test_a_missing_bucket_or_bad_credentials_are_unavailable_not_missing(s3_server: Any) -> None:
    missing = open_blob_store(s3_settings("s3://no-such-bucket/p", s3_server.endpoint))
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        missing.put("uploads/u1", b"x")
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        missing.get("uploads/u1")


def test_local_disk_errors_name_the_key_not_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = LocalBlobStore(tmp_path / "blobs")
    store.root = blocker  # the directory vanished under the store: a file sits in its place
    for call in (lambda: store.put("uploads/u1", b"x"), lambda: store.get("uploads/u1")):
        with pytest.raises(BlobStoreUnavailable) as caught:
            call()
        assert "uploads/u1" in caught.value.message
        assert str(tmp_path) not in caught.value.message


@pytest.mark.parametrize(
    "uri", ["http://example.com/blobs", "s3://", "s3:///prefix", "gs://bucket/prefix"]
)
def test_blob_uris_that_name_no_store_are_refused_at_start(uri: str) -> None:
    with pytest.raises(ValueError, match="ASSETRAG_BLOB_URI"):
        Settings(_env_file=None, blob_uri=uri)  # type: ignore[call-arg]


def test_aws_variables_configure_the_s3_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRAG_BLOB_URI", "s3://media/blobs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.s3_endpoint_url == "http://minio:9000" and settings.s3_region == "eu-west-1"
    assert "s3cr3t-value" not in repr(settings)
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("media", "blobs/")
    assert store.client.meta.endpoint_url == "http://minio:9000"
    assert store.client.meta.region_name == "eu-west-1"
