"""An asset as the vector store keeps it (AssetRecord) and as a search finds it (VectorHit),
and their rows as Milvus takes and answers them."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from shared import contract
from shared.contract import VECTOR_ONLY, Finder
from shared.milvus.schema import keyword_text


class AssetRecord(BaseModel):
    asset_id: str
    vector: list[float] | None = None
    filename: str = ""
    source: str = ""
    content_key: str = ""
    mime_type: str = ""
    width: int = 0
    height: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)

    def public(self, collection: str) -> contract.Asset:
        return contract.Asset(
            **self.model_dump(exclude={"vector", "content_key"}),
            content_url=contract.asset_content_url(collection, self.asset_id),
            thumbnail_url=contract.thumbnail_url(collection, self.asset_id),
        )


class VectorHit(BaseModel):
    asset_id: str
    score: float
    filename: str
    source: str
    metadata: dict[str, Any]
    content_key: str
    found_by: list[Finder] = Field(default_factory=lambda: list(VECTOR_ONLY))

    def public(self, collection: str) -> contract.Hit:
        return contract.Hit(
            **self.model_dump(exclude={"content_key"}),
            content_url=contract.asset_content_url(collection, self.asset_id),
            thumbnail_url=contract.thumbnail_url(collection, self.asset_id),
        )


def row_of(record: AssetRecord, keyword: bool) -> dict[str, Any]:
    """The row to upsert; `keyword`: the collection has keyword fields to fill."""
    if record.vector is None:
        raise ValueError(f"asset {record.asset_id!r} has no vector")
    fields = record.model_dump()
    if keyword:
        fields["text"] = keyword_text(record.filename, record.metadata)
    return fields


def record_of(row: Any) -> AssetRecord:
    fields = dict(row)
    if "vector" in fields:
        fields["vector"] = [float(x) for x in fields["vector"]]
    return AssetRecord.model_validate(fields)


def hits_of(query_hits: Any, finder: Finder, min_score: float | None = None) -> list[VectorHit]:
    """One query's hits, best first; below `min_score` left out."""
    found = []
    for hit in query_hits:
        # COSINE/IP: a similarity, higher is better. BM25: Milvus Lite answers the score
        # negated, a server as it is.
        score = abs(float(hit["distance"])) if finder == "keyword" else float(hit["distance"])
        if min_score is not None and score < min_score:
            continue
        entity = hit["entity"]
        found.append(
            VectorHit(
                asset_id=hit_id(hit),
                score=score,
                filename=entity.get("filename") or "",
                source=entity.get("source") or "",
                metadata=entity.get("metadata") or {},
                content_key=entity.get("content_key") or "",
                found_by=[finder],
            )
        )
    found.sort(key=lambda h: h.score, reverse=True)
    return found


def hit_id(hit: Any) -> str:
    # the primary key: by its name from Milvus Lite, as "id" from a 2.3 server
    return str(hit.get("asset_id", hit.get("id")))
