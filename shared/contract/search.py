"""The search job's shapes: a query (text, an upload or an asset) and its mode, the filter
language, the request, and the hits it answers with.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
    FILTER_FIELD_RE,
    MAX_QUERIES,
    TOP_K_MAX,
    AssetId,
    CollectionName,
    Integer,
    Metadata,
    Result,
    Strict,
    Text,
    UploadId,
    Webhook,
    exactly_one,
    not_null,
)

# Milvus filter literals: no control characters, finite numbers.
FilterString = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$")]
FilterValue = FilterString | int | Annotated[float, Field(allow_inf_nan=False)] | bool
FilterField = Annotated[str, Field(pattern=FILTER_FIELD_RE.pattern)]


class SearchMode(StrEnum):
    vector = "vector"
    keyword = "keyword"
    hybrid = "hybrid"


# Which searches found a hit: CLIP's vectors, BM25 over the asset's words, or both.
Finder = Literal["vector", "keyword"]
VECTOR_ONLY: tuple[Finder, ...] = ("vector",)


class SearchQuery(BaseModel):
    # mode goes with text only: said with anyOf/not, which every schema-driven client (and
    # fuzzer) reads, where dependentRequired is often ignored
    model_config = exactly_one(
        "text",
        "upload_id",
        "asset_id",
        anyOf=[{"required": ["text"]}, {"not": {"required": ["mode"]}}],
    )

    text: Text | SkipJsonSchema[None] = None
    upload_id: UploadId | SkipJsonSchema[None] = None
    asset_id: AssetId | SkipJsonSchema[None] = None
    # not strict: a JSON string becomes the enum (strict mode takes only an instance)
    mode: Annotated[SearchMode, Field(strict=False)] | SkipJsonSchema[None] = Field(
        default=None,
        description="text queries only: vector (CLIP, the default), keyword (BM25 over each "
        "asset's filename and metadata) or hybrid (both, fused by reciprocal rank)",
    )

    _no_nulls = field_validator("text", "upload_id", "asset_id", "mode", mode="before")(not_null)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchQuery:
        given = [q for q in (self.text, self.upload_id, self.asset_id) if q is not None]
        if len(given) != 1:
            raise ValueError("each query needs exactly one of text, upload_id or asset_id")
        if self.mode is not None and self.text is None:
            raise ValueError("mode applies to text queries only")
        return self

    @property
    def search_mode(self) -> SearchMode:
        return self.mode or SearchMode.vector

    @property
    def finders(self) -> tuple[Finder, ...]:
        mode = self.search_mode
        if mode == SearchMode.hybrid:
            return ("vector", "keyword")
        return ("keyword",) if mode == SearchMode.keyword else ("vector",)

    @property
    def source(self) -> str:
        if self.asset_id is not None:
            return f"asset:{self.asset_id}"
        if self.upload_id is not None:
            return f"upload:{self.upload_id}"
        return f"text:{self.text}"


class SearchRequest(Strict):
    collection: CollectionName
    queries: list[SearchQuery] = Field(min_length=1, max_length=MAX_QUERIES)
    top_k: Integer = Field(default=10, ge=1, le=TOP_K_MAX)
    filter: dict[FilterField, FilterValue] | None = Field(
        default=None,
        description="equality on metadata fields (or filename, source, mime_type)",
        json_schema_extra={"additionalProperties": False},
    )
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)


class Hit(BaseModel):
    asset_id: str
    score: float = Field(
        description="vector: cosine similarity; keyword: BM25 score; hybrid: the fused "
        "reciprocal-rank score"
    )
    found_by: list[Finder] = Field(
        default_factory=lambda: list(VECTOR_ONLY), description="which searches found it"
    )
    filename: str
    source: str
    metadata: Metadata
    content_url: str
    thumbnail_url: str


class SearchResult(Result):
    results: list[list[Hit]] = Field(description="one list per query, best first")
