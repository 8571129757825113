"""The API over an S3 blob store: uploads and reads go to the bucket, and a store that
cannot be reached answers 503 blob_store_unavailable (the error shape, Retry-After)."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient

from api.main import create_app
from cli.stack import free_port
from shared.settings import Settings
from tests.support.images import make_image
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY


def on_s3(settings: Settings, uri: str, endpoint: str) -> Settings:
    return settings.model_copy(
        update={
            "blob_uri": uri,
            "s3_endpoint_url": endpoint,
            "s3_region": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": Settings(
                _env_file=None,  # type: ignore[call-arg]
                aws_secret_access_key=SECRET_KEY,
            ).aws_secret_access_key,
            "s3_timeout_s": 1.0,
        }
    )


def upload(api: TestClient) -> Any:
    files = [("files", ("a.png", io.BytesIO(make_image(1)), "image/png"))]
    return api.post("/v1/uploads", files=files)


def test_uploads_land_in_the_bucket(settings: Settings, s3_server: Any) -> None:
    bucket = s3_server.new_bucket()
    with TestClient(create_app(on_s3(settings, f"s3://{bucket}/b", s3_server.endpoint))) as api:
        response = upload(api)
    assert response.status_code == 201, response.text
    [uploaded] = response.json()["uploads"]
    assert s3_server.keys(bucket) == [f"b/uploads/{uploaded['upload_id']}"]
    assert not (settings.data_dir / "blobs").exists()  # nothing written locally


def test_an_unreachable_blob_store_answers_503(settings: Settings) -> None:
    down = on_s3(settings, "s3://bucket/b", f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(down)) as api:
        response = upload(api)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "blob_store_unavailable"
        assert "uploads/" in error["message"] and "127.0.0.1" not in error["message"]
        assert response.headers["Retry-After"] == "5"
        declared = api.get("/openapi.json").json()["paths"]["/v1/uploads"]["post"]["responses"]
        assert "blob_store_unavailable" in declared["503"]["description"]
