"""Turning image bytes into stored assets: decode → encode → original under its content hash →
record → upsert. Embed batches and generated images both go through here, and so every
write honours a re-index in progress (shared/milvus/reindexing.py): the version being built gets
the same assets, encoded with its own model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.blobs import asset_key
from shared.images import ImageInfo, sniff_and_decode
from shared.milvus.records import AssetRecord
from shared.milvus.reindexing import ReindexMark
from shared.milvus.tenants import TenantVectors
from workers.context import Target, WorkerContext

if TYPE_CHECKING:  # the model is loaded where it runs, not where this module is imported
    import torch

    from shared.clip.families import Encoder


@dataclass
class NewAsset:
    """An image about to become an asset: its bytes, its preprocessed pixels, its origin."""

    data: bytes
    pixels: torch.Tensor
    info: ImageInfo
    filename: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    model: str = ""  # whose preprocessing made `pixels`

    @property
    def asset_id(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def record(self, content_key: str, vector: list[float]) -> AssetRecord:
        return AssetRecord(
            asset_id=self.asset_id,
            vector=vector,
            filename=self.filename,
            source=self.source,
            content_key=content_key,
            mime_type=self.info.mime_type,
            width=self.info.width,
            height=self.info.height,
            metadata=self.metadata,
            created_at=time.time(),
        )


def decode_asset(
    ctx: WorkerContext,
    data: bytes,
    filename: str,
    source: str,
    metadata: dict[str, Any],
    model: str | None = None,
) -> NewAsset:
    """Sniff, decode (JPEG draft mode at the model's resolution) and preprocess for `model`
    (the default one when None); thread-safe.

    Raises ImageRejected for bytes that are not a usable image.
    """
    encoder = ctx.encoder(model)
    info, image = sniff_and_decode(
        data, ctx.settings.max_image_pixels, draft_size=encoder.input_resolution
    )
    pixels = encoder.preprocess(image)
    return NewAsset(data, pixels, info, filename, source, metadata, encoder.model_id)


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


def store_assets(
    ctx: WorkerContext,
    scope: TenantVectors,
    collection: str,
    assets: list[NewAsset],
    target: Target,
    timings: dict[str, float] | None = None,
) -> list[str]:
    """Encodes the images in one batch and stores them into the target version (whose
    model preprocessed them), and into a version a re-index is building; returns their
    asset ids in order.

    Idempotent: ids are content hashes, so a repeated image or a redelivered batch upserts
    the same rows and writes no original twice.
    """
    if not assets:
        return []
    timings = {} if timings is None else timings
    encoder = ctx.encoder(target.model)
    with timed(timings, "encode"):
        vectors = encoder.encode_images([asset.pixels for asset in assets])
    with timed(timings, "write"):
        records: dict[str, AssetRecord] = {}
        for asset, vector in zip(assets, vectors, strict=True):
            key = asset_key(asset.asset_id)
            if not ctx.blobs.exists(key):
                ctx.blobs.put(key, asset.data)
            records[asset.asset_id] = asset.record(key, vector.tolist())
        ctx.upsert(scope, collection, list(records.values()), encoder, target.version)
    mark = ctx.reindexing.for_writers(scope.physical(collection))
    if mark is not None and mark.version != target.version:
        with timed(timings, "reindex"):
            write_version(ctx, scope, collection, list(records.values()), assets, mark)
    return [asset.asset_id for asset in assets]


def write_version(
    ctx: WorkerContext,
    scope: TenantVectors,
    collection: str,
    records: list[AssetRecord],
    assets: list[NewAsset],
    mark: ReindexMark,
) -> None:
    """The same records into the version being built, with vectors of its own model."""
    by_id = {asset.asset_id: asset for asset in assets}
    encoder = ctx.encoder(mark.model)
    pixels = list(
        ctx.decode_pool.map(lambda r: preprocess_again(ctx, by_id[r.asset_id], encoder), records)
    )
    scope.upsert(collection, with_vectors(encoder, records, pixels), mark.version)


def with_vectors(
    encoder: Encoder, records: list[AssetRecord], pixels: list[torch.Tensor]
) -> list[AssetRecord]:
    """The records again, each with `encoder`'s vector of its preprocessed image."""
    vectors = encoder.encode_images(pixels)
    return [
        r.model_copy(update={"vector": v.tolist()}) for r, v in zip(records, vectors, strict=True)
    ]


def preprocess_again(ctx: WorkerContext, asset: NewAsset, encoder: Encoder) -> torch.Tensor:
    if asset.model == encoder.model_id:
        return asset.pixels
    _, image = sniff_and_decode(
        asset.data, ctx.settings.max_image_pixels, draft_size=encoder.input_resolution
    )
    return encoder.preprocess(image)
