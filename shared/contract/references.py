"""What a generation draws on: its reference sources (an upload, named assets, a search run at
generation time, a URL), each with a role and a label, and what they came to (the sources as
used, kept on the item's result and in a saved image's lineage).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
    MAX_REFERENCES,
    AssetId,
    CollectionName,
    Integer,
    Strict,
    Text,
    UploadId,
    exactly_one,
    not_null,
)
from shared.contract.search import FilterField, FilterValue, SearchMode

ReferenceRole = Literal["subject", "base", "style", "item"]
# The order images are sent in: the image being edited first, then the people or products to
# keep, then the rest as given.
ROLE_ORDER: tuple[ReferenceRole, ...] = ("base", "subject", "style", "item")
Label = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": r"\S"})]
SourceKind = Literal["upload", "assets", "query", "url", "output"]

_KINDS = ("upload_id", "asset_ids", "query", "url")
# Fields that belong to one kind of source, said in the schema as "if given, so is the kind"
# (anyOf/not, which schema-driven clients read where dependentRequired is often ignored).
_BELONGS_TO = {
    "save": ("upload_id",),
    "top_k": ("query",),
    "filter": ("query",),
    "mode": ("query",),
    "collection": ("query", "asset_ids"),
}


def _dependencies() -> list[dict[str, object]]:
    return [
        {"anyOf": [*({"required": [k]} for k in kinds), {"not": {"required": [field]}}]}
        for field, kinds in _BELONGS_TO.items()
    ]


class ReferenceSource(Strict):
    """One source of reference images: exactly one of `upload_id`, `asset_ids`, `query` or
    `url`, with the role its images play and a label the prompt names them by."""

    model_config = exactly_one(*_KINDS, allOf=_dependencies())

    upload_id: UploadId | SkipJsonSchema[None] = Field(
        default=None, description="an image sent to POST /v1/uploads"
    )
    save: bool = Field(
        default=False,
        description="upload_id only: also add the uploaded image to the job's collection",
    )
    asset_ids: (
        Annotated[list[AssetId], Field(min_length=1, max_length=MAX_REFERENCES)]
        | SkipJsonSchema[None]
    ) = None
    query: Text | SkipJsonSchema[None] = Field(
        default=None, description="searched when the generation runs, like a search job"
    )
    top_k: Integer = Field(default=3, ge=1, le=MAX_REFERENCES, description="query only")
    filter: dict[FilterField, FilterValue] | SkipJsonSchema[None] = Field(
        default=None,
        description="query only: equality on metadata fields",
        json_schema_extra={"additionalProperties": False},
    )
    # not strict: a JSON string becomes the enum
    mode: Annotated[SearchMode, Field(strict=False)] | SkipJsonSchema[None] = Field(
        default=None, description="query only: vector (the default), keyword or hybrid"
    )
    collection: CollectionName | SkipJsonSchema[None] = Field(
        default=None,
        description="query and asset_ids: where to look (another collection of yours); "
        "the job's collection when left out",
    )
    url: HttpUrl | SkipJsonSchema[None] = Field(
        default=None, description="fetched as embed URLs are (public addresses only)"
    )
    role: ReferenceRole = Field(
        default="item",
        description="subject: the person or product to keep; base: the image being edited "
        "(sent first); style: a look to follow; item: something to include",
    )
    label: Label | SkipJsonSchema[None] = Field(
        default=None, description='how the prompt names these images ("the red shawl")'
    )

    _no_nulls = field_validator(*_KINDS, "filter", "mode", "collection", "label", mode="before")(
        not_null
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ReferenceSource:
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "each reference source needs exactly one of upload_id, asset_ids, query or url"
            )
        for field, kinds in _BELONGS_TO.items():
            if field in self.model_fields_set and given[0] not in kinds:
                raise ValueError(f"{field} applies to {' or '.join(kinds)} sources only")
        return self

    @model_serializer(mode="wrap")
    def _own_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Dumped (as a job's request is kept) without the defaults of another kind's fields,
        # so what is kept validates again.
        kind = next(k for k in _KINDS if getattr(self, k) is not None)
        dumped: dict[str, Any] = handler(self)
        return {
            name: value
            for name, value in dumped.items()
            if name not in _BELONGS_TO or kind in _BELONGS_TO[name]
        }

    @property
    def kind(self) -> SourceKind:
        if self.upload_id is not None:
            return "upload"
        if self.asset_ids is not None:
            return "assets"
        return "query" if self.query is not None else "url"

    @property
    def most(self) -> int:
        """How many images this source sends at most (a query, its top_k)."""
        if self.asset_ids is not None:
            return len(self.asset_ids)
        return self.top_k if self.query is not None else 1


References = Annotated[
    list[ReferenceSource],
    Field(min_length=1, max_length=MAX_REFERENCES),
]


def as_sources(value: object) -> object:
    """The one-object form (`{"asset_ids": [...]}` or `{"query": ...}`) as a list of one."""
    return [value] if isinstance(value, dict | ReferenceSource) else value


class SourceHit(BaseModel):
    asset_id: str
    collection: str
    score: float | None = Field(default=None, description="a query's hit: its search score")


class UsedSource(BaseModel):
    """A source as the generation used it: what it named or found, in the order sent."""

    kind: SourceKind
    role: ReferenceRole
    label: str | None = None
    collection: str | None = None
    query: str | None = None
    hits: list[SourceHit] = Field(
        default_factory=list, description="the assets it sent (a query's with their scores)"
    )
    upload_id: str | None = None
    url: str | None = None
    sha256: str | None = Field(default=None, description="an upload's or a URL's image bytes")


class LineageStep(BaseModel):
    """How one generated asset was made."""

    asset_id: str
    collection: str
    prompt: str
    model: str
    job_id: str | None = None
    item: int | None = None
    aspect_ratio: str | None = None
    sources: list[UsedSource] = Field(default_factory=list)


class Lineage(BaseModel):
    """The chain from an asset back to its originals: the asset's own step first, then the
    steps of the generated assets it drew on, breadth first."""

    asset_id: str
    steps: list[LineageStep]
    originals: list[SourceHit] = Field(
        description="the assets the chain starts from (not generated here)"
    )
    uploads: list[UsedSource] = Field(
        default_factory=list, description="the uploads and URLs the chain drew on"
    )
