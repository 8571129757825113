"""Request and response models at the HTTP edge; workers parse the stored request with them too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from shared.jobs import Job
from shared.sources import Upload

COLLECTION_FIELD = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$", examples=["products"])
AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
ImageSize = Literal["1K", "2K", "4K"]
FilterValue = str | int | float | bool
# Bounds that pydantic enforces; the configurable caps are checked again by the API.
MAX_TEXT = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedItem(Strict):
    upload_id: str | None = None
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    url: HttpUrl | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> EmbedItem:
        given = [s for s in (self.upload_id, self.path, self.url) if s is not None]
        if len(given) != 1:
            raise ValueError("each item needs exactly one of upload_id, path or url")
        return self

    @property
    def source(self) -> str:
        if self.upload_id is not None:
            return f"upload:{self.upload_id}"
        return str(self.path if self.path is not None else self.url)


class DirectorySpec(Strict):
    path: str = Field(min_length=1, max_length=4096)
    pattern: str = Field(default="*", min_length=1, max_length=256)
    recursive: bool = True


class EmbedRequest(Strict):
    collection: str = COLLECTION_FIELD
    items: list[EmbedItem] = Field(default_factory=list)
    directory: DirectorySpec | None = None

    @model_validator(mode="after")
    def _something(self) -> EmbedRequest:
        if not self.items and self.directory is None:
            raise ValueError("give items, a directory, or both")
        return self


class SearchQuery(Strict):
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    upload_id: str | None = None
    asset_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchQuery:
        given = [q for q in (self.text, self.upload_id, self.asset_id) if q is not None]
        if len(given) != 1:
            raise ValueError("each query needs exactly one of text, upload_id or asset_id")
        if self.text is not None and not self.text.strip():
            raise ValueError("query text is empty")
        return self


class SearchRequest(Strict):
    collection: str = COLLECTION_FIELD
    queries: list[SearchQuery] = Field(min_length=1, max_length=256)
    top_k: int = Field(default=10, ge=1, le=100)
    filter: dict[str, FilterValue] | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)

    @field_validator("filter")
    @classmethod
    def _filter_fields(cls, value: dict[str, FilterValue] | None) -> dict[str, FilterValue] | None:
        for name in value or {}:
            if not name.replace("_", "").isalnum() or not name[:1].isalpha():
                raise ValueError(f"filter field {name!r} must be letters, digits and underscores")
        return value


class AssetReferences(Strict):
    asset_ids: list[str] | None = Field(default=None, min_length=1, max_length=14)
    query: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    top_k: int = Field(default=3, ge=1, le=14)

    @model_validator(mode="after")
    def _one_kind(self) -> AssetReferences:
        if (self.asset_ids is None) == (self.query is None):
            raise ValueError("references need exactly one of asset_ids or query")
        if self.query is not None and not self.query.strip():
            raise ValueError("reference query is empty")
        return self


class GenerateRequest(Strict):
    prompt: str = Field(min_length=1, max_length=MAX_TEXT)
    collection: str = COLLECTION_FIELD
    references: AssetReferences | None = None
    save_to_collection: bool = False
    count: int = Field(default=1, ge=1, le=4)
    aspect_ratio: AspectRatio | None = None
    image_size: ImageSize | None = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt is empty")
        return value


class UploadsResponse(BaseModel):
    uploads: list[Upload]


class JobList(BaseModel):
    data: list[Job]
    count: int
    next_cursor: str | None


class CollectionCreate(Strict):
    name: str = COLLECTION_FIELD
    metric: Literal["COSINE"] = "COSINE"


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
