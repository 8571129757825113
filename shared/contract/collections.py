"""Collections and what lives in them: creating one, its versions and re-indexing to another
model, its assets, and the duplicates job that scans it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import CollectionName, Metadata, Result, Strict, Webhook, not_null

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        # a name OpenAI publishes, open_clip:<arch>/<tag>, or a checkpoint's path on the workers
        pattern=r"^[A-Za-z0-9/][A-Za-z0-9@/._:+-]*$",
        description="a CLIP model the service allows (GET /v1/meta lists them)",
        examples=["ViT-L/14"],
    ),
]


class CollectionCreate(Strict):
    name: CollectionName
    metric: Literal["COSINE"] = "COSINE"
    model: ModelName | SkipJsonSchema[None] = Field(
        default=None,
        description="the model its vectors are made with (GET /v1/meta lists them); "
        "the service's default when left out",
    )


class CollectionInfo(BaseModel):
    name: str
    model: str
    dimension: int
    metric: str
    count: int | None = Field(default=None, description="left out where counting was skipped")
    created_at: float
    version: int = Field(default=1, description="which build of the collection answers")
    keyword_search: bool = Field(
        default=False, description="whether its assets can be found by keyword (BM25)"
    )


class CollectionVersion(BaseModel):
    version: int
    model: str
    dimension: int
    count: int
    created_at: float
    keyword_search: bool
    current: bool = Field(description="whether the collection answers from this version")


class Asset(BaseModel):
    asset_id: str
    filename: str
    source: str
    mime_type: str
    width: int
    height: int
    metadata: Metadata
    created_at: float
    content_url: str
    thumbnail_url: str


# ── re-indexing ─────────────────────────────────────────────────────────────────────────────


class ReindexRequest(Strict):
    model: ModelName
    drop_previous: bool = Field(
        default=False,
        description="drop the version it replaces once the alias has moved (else it stays "
        "until DELETE /v1/collections/{name}/versions/{n})",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)


class ReindexJob(ReindexRequest):
    """What a reindex job records: the request and the collection it names in its path."""

    collection: CollectionName


class ReindexResult(Result):
    collection: str
    model: str
    dimension: int
    from_version: int
    version: int
    swapped: bool = Field(description="whether the collection answers from the new version")
    previous_dropped: bool = False


# ── duplicates ──────────────────────────────────────────────────────────────────────────────

DEFAULT_DUPLICATE_THRESHOLD = 0.95


class DuplicatesRequest(Strict):
    collection: CollectionName
    threshold: float = Field(
        default=DEFAULT_DUPLICATE_THRESHOLD,
        ge=0.5,
        le=1.0,
        description="the least cosine similarity at which two assets count as duplicates",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)


class Cluster(BaseModel):
    asset_ids: list[str] = Field(description="in asset-id order")
    min_similarity: float = Field(description="the lowest similarity between two members")


CLUSTERS_SHOWN = 100


class DuplicatesResult(Result):
    collection: str
    threshold: float
    scanned: int = Field(description="assets compared")
    cluster_count: int
    duplicate_count: int = Field(description="assets in some cluster")
    clusters: list[Cluster] = Field(
        description=f"the largest {CLUSTERS_SHOWN} clusters, largest first; the rest page "
        "through GET /v1/jobs/{id}/clusters"
    )
