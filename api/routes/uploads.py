"""Uploads: image bytes checked by content, stored in the blob store, referenced by id."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep
from api.errors import responses
from api.paths import relative
from api.state import AppState
from shared import contract
from shared.contract import ErrorCode, UploadsResponse
from shared.errors import CodedError
from shared.images import ImageRejected, sniff_image
from shared.sources import StoredUpload, new_upload_id

router = APIRouter(prefix=contract.UPLOADS_PATH, tags=["uploads"])
E = ErrorCode


async def _read_capped(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise CodedError(E.file_too_large, f"{file.filename} is over the {limit}-byte upload limit")
    return data


def _check(state: AppState, name: str, data: bytes, tenant: str | None) -> StoredUpload:
    try:
        info = sniff_image(data, state.settings.max_image_pixels)
    except ImageRejected as exc:
        raise ImageRejected(exc.code, f"{name}: {exc.message}") from exc
    return StoredUpload(
        upload_id=new_upload_id(),
        filename=name[:1024],
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=info.mime_type,
        tenant=tenant,
    )


@router.post(
    relative(router, contract.UPLOADS_PATH),
    status_code=201,
    response_model=UploadsResponse,
    responses=responses(
        E.file_too_large, E.decompression_bomb, E.empty_file, E.not_an_image, E.corrupt_image
    ),
)
async def upload_files(
    files: Annotated[
        list[UploadFile],
        # required, one at least: without any the request is refused (422 invalid_request)
        File(min_length=1, description="one or many image files (at least one)"),
    ],
    caller: CallerDep,
) -> UploadsResponse:
    """Every file is checked before any is stored: one bad file refuses the request whole."""
    state, tenant = caller.state, caller.tenant
    accepted: list[tuple[StoredUpload, bytes]] = []
    for file in files:
        data = await _read_capped(file, state.settings.max_upload_bytes)
        name = file.filename or "upload"
        accepted.append((await run_in_threadpool(_check, state, name, data, tenant), data))
    for upload, data in accepted:
        await run_in_threadpool(state.uploads.add, upload, data)
    return UploadsResponse(uploads=[upload.public() for upload, _ in accepted])
