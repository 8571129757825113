"""The embed job's shapes: uploads, the items and folder an embed request names, and what the
job answers.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
    CollectionName,
    Metadata,
    Result,
    Strict,
    UploadId,
    Webhook,
    exactly_one,
    not_null,
)


class Upload(BaseModel):
    upload_id: str
    filename: str
    bytes: int
    sha256: str
    content_type: str


class UploadsResponse(BaseModel):
    uploads: list[Upload]


class EmbedItem(BaseModel):
    model_config = exactly_one("upload_id", "path", "url")

    upload_id: UploadId | SkipJsonSchema[None] = None
    path: Annotated[str, Field(min_length=1, max_length=4096)] | SkipJsonSchema[None] = None
    url: HttpUrl | SkipJsonSchema[None] = None
    metadata: Metadata = Field(default_factory=dict)

    _no_nulls = field_validator("upload_id", "path", "url", mode="before")(not_null)

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


class EmbedRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["items"], "properties": {"items": {"minItems": 1}}},
                {"required": ["directory"], "properties": {"directory": {"type": "object"}}},
            ]
        },
    )

    collection: CollectionName
    items: list[EmbedItem] = Field(default_factory=list)
    directory: DirectorySpec | None = None
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)

    @model_validator(mode="after")
    def _something(self) -> EmbedRequest:
        if not self.items and self.directory is None:
            raise ValueError("give items, a directory, or both")
        return self


class EmbedResult(Result):
    collection: str
    asset_ids: list[str | None] | None = Field(
        default=None,
        description="in item order, null for a failed item; left out above 10,000 items",
    )
