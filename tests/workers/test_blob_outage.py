"""An embed batch whose blob store stays unreachable: retried for ASSETRAG_BATCH_RETRY_S, then
its items fail with blob_store_unavailable (not internal_error) and the job still ends."""

from __future__ import annotations

from typing import Any

from cli.stack import free_port
from shared.blobs import open_blob_store
from shared.contract import JobKind, JobState
from shared.settings import Settings
from shared.sources import StoredUpload
from shared.tasks import EMBED_BATCH, PLAN_EMBED
from tests.support.images import make_image
from tests.support.inline import submit, take
from tests.support.s3_server import ACCESS_KEY, REGION
from workers.context import build_context
from workers.embed import embed_batch_with_retries, plan_embed


def test_items_fail_with_blob_store_unavailable(settings: Settings, s3_server: Any) -> None:
    bucket = s3_server.new_bucket()
    on_s3 = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{
            **settings.model_dump(exclude={"aws_secret_access_key", "aws_session_token"}),
            "blob_uri": f"s3://{bucket}/b",
            "s3_endpoint_url": s3_server.endpoint,
            "s3_region": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": s3_server.env()["AWS_SECRET_ACCESS_KEY"],
            "batch_retry_s": 0,
        },
    )
    ctx = build_context(on_s3)
    try:
        data = make_image(41)
        upload = StoredUpload(
            upload_id="outage-upload-000000000",
            filename="a.png",
            bytes=len(data),
            sha256="0" * 64,
            content_type="image/png",
        )
        ctx.uploads.add(upload, data)
        job_id = submit(
            ctx, JobKind.embed, {"collection": "outage", "items": [{"upload_id": upload.upload_id}]}
        )
        [(name, args)] = take(ctx)
        assert name == PLAN_EMBED
        plan_embed(ctx, *args)
        [(name, args)] = take(ctx)
        assert name == EMBED_BATCH
        # The store goes away between the upload and the batch.
        down = on_s3.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
        ctx.blobs = ctx.uploads.blobs = open_blob_store(down)
        embed_batch_with_retries(ctx, *args)
        job = ctx.jobs.get(job_id)
        assert job is not None and job.state == JobState.completed
        assert job.progress.model_dump() == {"total": 1, "succeeded": 0, "failed": 1}
        [error] = job.errors
        assert error.code == "blob_store_unavailable" and "uploads/" in error.message
    finally:
        ctx.close()
