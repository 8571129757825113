"""Collections and the assets in them: records, original bytes and thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from api.deps import AssetDep, CallerDep, CollectionDep
from api.errors import responses
from api.lineage import trace
from api.paths import ASSET_ID, NAME, relative
from api.state import AppState
from shared import contract
from shared.blobs import BlobNotFound, thumbnail_key
from shared.clip.catalog import local_dimension
from shared.contract import Asset, CollectionCreate, CollectionInfo, ErrorCode, Lineage, Page
from shared.errors import CodedError, Conflict, NotFound
from shared.images import thumbnail
from shared.milvus.records import AssetRecord
from shared.rules import check_model_allowed

router = APIRouter(prefix=contract.COLLECTIONS_PATH, tags=["collections"])
E = ErrorCode
COLLECTIONS = relative(router, contract.COLLECTIONS_PATH)
COLLECTION = relative(router, contract.collection_path(NAME))
ASSET = relative(router, contract.asset_url(NAME, ASSET_ID))
# Content-addressed: the bytes behind an asset id never change.
IMMUTABLE = "private, max-age=31536000, immutable"
IMAGE_BYTES = {"content": {"image/*": {}}, "description": "image bytes"}


def _original(state: AppState, record: AssetRecord) -> bytes:
    """The bytes the asset was embedded from."""
    try:
        return state.blobs.get(record.content_key)
    except BlobNotFound as exc:
        raise NotFound(E.content_not_found, f"the bytes of {record.asset_id} are gone") from exc


@router.get(COLLECTIONS, response_model=Page[CollectionInfo], responses=responses())
def list_collections(caller: CallerDep) -> Page[CollectionInfo]:
    return Page[CollectionInfo](data=caller.vectors.list_collections())


@router.post(
    COLLECTIONS,
    status_code=201,
    response_model=CollectionInfo,
    responses=responses(
        E.model_not_loaded, E.model_not_allowed, E.collection_exists, E.malformed_json
    ),
)
def create_collection(body: CollectionCreate, caller: CallerDep) -> CollectionInfo:
    """An empty collection for `model` (one GET /v1/meta offers; the service's default when
    left out). Embedding into a missing collection creates it too, on the default model."""
    state, vectors = caller.state, caller.vectors
    model = body.model or state.settings.clip_model
    check_model_allowed(model, state.settings.allowed_models)
    dimension = state.models.dimension(model) or local_dimension(model, state.settings.model_dir)
    if dimension is None:
        raise CodedError(
            E.model_not_loaded,
            f"the dimension of {model} is unknown until a worker loads it; "
            "embed into the collection instead (it is created on first use)",
        )
    if vectors.has_collection(body.name):
        raise Conflict(E.collection_exists, f"collection {body.name} already exists")
    return vectors.ensure_collection(body.name, dimension, model, body.metric)


@router.get(COLLECTION, response_model=CollectionInfo, responses=responses(E.collection_not_found))
def describe_collection(name: str, caller: CallerDep) -> CollectionInfo:
    # counted, unlike CollectionDep's: Milvus is asked (and answers 404) here
    return caller.vectors.get_collection(name)


@router.delete(
    COLLECTION,
    status_code=204,
    response_class=Response,
    responses=responses(E.collection_not_found),
)
def delete_collection(name: str, caller: CallerDep) -> Response:
    """Drops the collection's vectors and records (originals other collections share stay)."""
    caller.vectors.drop_collection(name)
    return Response(status_code=204)


@router.get(
    relative(router, contract.assets_path(NAME)),
    response_model=Page[Asset],
    responses=responses(E.collection_not_found),
)
def list_assets(
    name: str,
    _: CollectionDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=contract.ASSET_ID_RE.pattern, description="from a previous page")
    ] = None,
) -> Page[Asset]:
    """A page of the collection's assets in asset-id order, which assets added meanwhile do
    not shift (ids are content hashes, so the order says nothing of age)."""
    records = caller.vectors.list_assets(name, limit + 1, cursor)
    page = records[:limit]
    return Page[Asset](
        data=[record.public(name) for record in page],
        next_cursor=page[-1].asset_id if len(records) > limit else None,
    )


@router.get(
    ASSET, response_model=Asset, responses=responses(E.collection_not_found, E.asset_not_found)
)
def read_asset(name: str, record: AssetDep) -> Asset:
    return record.public(name)


@router.get(
    relative(router, contract.lineage_url(NAME, ASSET_ID)),
    response_model=Lineage,
    responses=responses(E.collection_not_found, E.asset_not_found),
)
def asset_lineage(name: str, record: AssetDep, caller: CallerDep) -> Lineage:
    """How the asset was made: its step (sources with their roles, labels, query texts and
    hit scores, uploads by sha256, the prompt, the model), then the steps of the generated
    assets it drew on, back to the originals. An asset not generated here is its own
    original, with no steps."""
    return trace(caller.vectors, name, record)


@router.delete(
    ASSET,
    status_code=204,
    response_class=Response,
    responses=responses(E.collection_not_found, E.asset_not_found),
)
def delete_asset(name: str, record: AssetDep, caller: CallerDep) -> Response:
    """Removes the asset from the collection (from every version of it): it is no longer
    found, listed or shown. Its original's bytes stay in the blob store, where the same
    image in other collections shares them."""
    caller.vectors.delete_asset(name, record.asset_id)
    return Response(status_code=204)


@router.get(
    relative(router, contract.asset_content_url(NAME, ASSET_ID)),
    response_class=Response,
    responses={
        200: IMAGE_BYTES,
        **responses(E.collection_not_found, E.asset_not_found, E.content_not_found),
    },
)
def asset_content(record: AssetDep, caller: CallerDep) -> Response:
    """The original bytes, as they were embedded."""
    data = _original(caller.state, record)
    return Response(data, media_type=record.mime_type, headers={"Cache-Control": IMMUTABLE})


@router.get(
    relative(router, contract.thumbnail_url(NAME, ASSET_ID)),
    response_class=Response,
    responses={
        200: {"content": {"image/webp": {}}, "description": "a downscaled WebP"},
        304: {"description": "the thumbnail the client holds (If-None-Match) is current"},
        **responses(E.collection_not_found, E.asset_not_found, E.content_not_found),
    },
)
def asset_thumbnail(
    record: AssetDep,
    caller: CallerDep,
    size: Annotated[
        contract.ThumbnailSize, Query(description="longest side")
    ] = contract.DEFAULT_THUMBNAIL_SIZE,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A WebP of the asset at most `size` pixels on its longest side, made once and kept in
    the blob store."""
    state = caller.state
    etag = f'"{record.asset_id[:32]}-{size}"'
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
    if if_none_match is not None and etag in if_none_match:
        return Response(status_code=304, headers=headers)
    key = thumbnail_key(record.asset_id, size)
    try:
        data = state.blobs.get(key)
    except BlobNotFound:
        data = thumbnail(_original(state, record), size, state.settings.max_image_pixels)
        state.blobs.put(key, data)
    return Response(data, media_type="image/webp", headers=headers)
