"""Collections and the assets in them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import StateDep, VectorsDep
from api.errors import ApiError
from shared.blobs import BlobNotFound
from shared.schemas import CollectionCreate
from shared.vectors import AssetRecord, CollectionInfo, CollectionNotFound

router = APIRouter(prefix="/v1/collections", tags=["collections"])


def _collection(vectors: VectorsDep, name: str) -> CollectionInfo:
    try:
        return vectors.get_collection(name)
    except (CollectionNotFound, ValueError) as exc:
        raise ApiError(404, "collection_not_found", f"no collection {name}") from exc


def _asset(vectors: VectorsDep, name: str, asset_id: str) -> AssetRecord:
    _collection(vectors, name)
    record = vectors.get_asset(name, asset_id) if len(asset_id) == 64 else None
    if record is None:
        raise ApiError(404, "asset_not_found", f"no asset {asset_id} in {name}")
    return record


@router.get("")
def list_collections(vectors: VectorsDep) -> dict[str, Any]:
    collections = vectors.list_collections()
    return {"data": [c.model_dump() for c in collections], "count": len(collections)}


@router.post("", status_code=201, response_model=CollectionInfo)
def create_collection(
    body: CollectionCreate, state: StateDep, vectors: VectorsDep
) -> CollectionInfo:
    model = state.settings.clip_model
    dimension = state.models.dimension(model)
    if dimension is None:
        raise ApiError(
            503,
            "model_not_loaded",
            f"the dimension of {model} is unknown until a worker loads it; "
            "embed into the collection instead (it is created on first use)",
        )
    if vectors.has_collection(body.name):
        raise ApiError(409, "collection_exists", f"collection {body.name} already exists")
    return vectors.ensure_collection(body.name, dimension, model, body.metric)


@router.get("/{name}", response_model=CollectionInfo)
def describe_collection(name: str, vectors: VectorsDep) -> CollectionInfo:
    return _collection(vectors, name)


@router.delete("/{name}", status_code=204)
def delete_collection(name: str, vectors: VectorsDep) -> Response:
    _collection(vectors, name)
    vectors.drop_collection(name)
    return Response(status_code=204)


@router.get("/{name}/assets/{asset_id}")
def read_asset(name: str, asset_id: str, vectors: VectorsDep) -> dict[str, Any]:
    record = _asset(vectors, name, asset_id)
    body = record.model_dump(exclude={"vector", "content_key"})
    body["content_url"] = f"/v1/collections/{name}/assets/{asset_id}/content"
    return body


@router.get("/{name}/assets/{asset_id}/content", responses={200: {"content": {"image/*": {}}}})
def asset_content(name: str, asset_id: str, state: StateDep, vectors: VectorsDep) -> Response:
    record = _asset(vectors, name, asset_id)
    try:
        data = state.blobs.get(record.content_key)
    except BlobNotFound as exc:
        raise ApiError(404, "content_not_found", f"the bytes of {asset_id} are gone") from exc
    # Content-addressed: the bytes behind an asset id never change.
    return Response(
        data,
        media_type=record.mime_type,
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )
