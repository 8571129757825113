"""Uploads: image bytes checked by content, stored in the blob store, referenced by id."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TenantDep
from api.errors import ApiError
from shared.images import ImageRejected, sniff_image
from shared.schemas import UploadsResponse
from shared.sources import Upload, new_upload_id

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

_STATUS = {"decompression_bomb": 413}


async def _read_capped(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413, "file_too_large", f"{file.filename} is over the {limit}-byte upload limit"
        )
    return data


@router.post("", status_code=201, response_model=UploadsResponse)
async def upload_files(
    files: Annotated[list[UploadFile], File(description="one or many image files")],
    state: StateDep,
    tenant: TenantDep,
) -> UploadsResponse:
    """Every file is checked before any is stored: one bad file refuses the request whole."""
    settings = state.settings
    accepted: list[tuple[Upload, bytes]] = []
    for file in files:
        data = await _read_capped(file, settings.max_upload_bytes)
        name = file.filename or "upload"
        try:
            info = await run_in_threadpool(sniff_image, data, settings.max_image_pixels)
        except ImageRejected as exc:
            raise ApiError(_STATUS.get(exc.code, 415), exc.code, f"{name}: {exc.message}") from exc
        upload = Upload(
            upload_id=new_upload_id(),
            filename=name[:1024],
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=info.mime_type,
            tenant=tenant,
        )
        accepted.append((upload, data))
    for upload, data in accepted:
        await run_in_threadpool(state.uploads.add, upload, data)
    return UploadsResponse(uploads=[upload for upload, _ in accepted])
