"""An asset's lineage: the steps that made it, read from the lineage each generated asset keeps
in its metadata, followed back through the generated assets it drew on to the originals."""

from __future__ import annotations

from collections import deque
from typing import Any

from shared.contract import Lineage, LineageStep, SourceHit, UsedSource
from shared.errors import CodedError
from shared.milvus.records import AssetRecord
from shared.milvus.tenants import TenantVectors

# A chain longer than this is cut (an edit of an edit of ... is rare past a handful).
MAX_STEPS = 50


def trace(vectors: TenantVectors, collection: str, record: AssetRecord) -> Lineage:
    """Breadth first from the asset: each generated asset's step, once; an asset with no
    lineage (or no longer there) is an original."""
    steps: list[LineageStep] = []
    originals: list[SourceHit] = []
    uploads: list[UsedSource] = []
    todo: deque[tuple[str, AssetRecord | None, str]] = deque(
        [(collection, record, record.asset_id)]
    )
    seen = {(collection, record.asset_id)}
    while todo and len(steps) < MAX_STEPS:
        where, found, asset_id = todo.popleft()
        made = found.metadata.get("lineage") if found is not None else None
        if found is None or not isinstance(made, dict):
            originals.append(SourceHit(asset_id=asset_id, collection=where))
            continue
        step = step_of(where, found, made)
        steps.append(step)
        for used in step.sources:
            if used.upload_id is not None or used.url is not None:
                uploads.append(used)
            for hit in used.hits:
                if (hit.collection, hit.asset_id) not in seen:
                    seen.add((hit.collection, hit.asset_id))
                    todo.append((hit.collection, _find(vectors, hit), hit.asset_id))
    return Lineage(asset_id=record.asset_id, steps=steps, originals=originals, uploads=uploads)


def step_of(collection: str, record: AssetRecord, made: dict[str, Any]) -> LineageStep:
    """One generated asset's step; a lineage kept before sources were (asset ids only) reads
    as one source of those assets."""
    sources = [UsedSource.model_validate(s) for s in made.get("sources") or []]
    if not sources and made.get("references"):
        hits = [SourceHit(asset_id=a, collection=collection) for a in made["references"]]
        sources = [UsedSource(kind="assets", role="item", collection=collection, hits=hits)]
    return LineageStep(
        asset_id=record.asset_id,
        collection=collection,
        prompt=str(made.get("prompt", "")),
        model=str(made.get("model", "")),
        job_id=made.get("job_id"),
        item=made.get("item"),
        aspect_ratio=made.get("aspect_ratio"),
        sources=sources,
    )


def _find(vectors: TenantVectors, hit: SourceHit) -> AssetRecord | None:
    try:
        return vectors.get_asset(hit.collection, hit.asset_id)
    except CodedError:  # its collection is gone (or another tenant's): an original now
        return None
