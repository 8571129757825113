"""The generate job's shapes: aspect ratios and sizes, the reference images a generation
draws on, one generation or many, and the images it answers with.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
    MAX_REFERENCES,
    AssetId,
    CollectionName,
    Integer,
    Metadata,
    Result,
    Strict,
    Text,
    Webhook,
    exactly_one,
    not_null,
)

# Every aspect ratio and size some supported model takes; which model takes which is the
# capability table in shared/rules.py, checked at submit.
AspectRatio = Literal[
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
    "1:4",
    "4:1",
    "1:8",
    "8:1",
]
ImageSize = Literal["512", "1K", "2K", "4K"]
GenerateMode = Literal["interactive", "batch"]
MAX_VARIANTS = 4
# Images kept per item: an item's images are numbered index * IMAGES_PER_ITEM + n, so items
# finishing side by side never share a number.
IMAGES_PER_ITEM = 16


def generated_image_number(index: int, n: int) -> int:
    return index * IMAGES_PER_ITEM + n


class AssetReferences(BaseModel):
    model_config = exactly_one("asset_ids", "query")

    asset_ids: (
        Annotated[list[AssetId], Field(min_length=1, max_length=MAX_REFERENCES)]
        | SkipJsonSchema[None]
    ) = None
    query: Text | SkipJsonSchema[None] = None
    top_k: Integer = Field(default=3, ge=1, le=MAX_REFERENCES)

    _no_nulls = field_validator("asset_ids", "query", mode="before")(not_null)

    @model_validator(mode="after")
    def _one_kind(self) -> AssetReferences:
        if (self.asset_ids is None) == (self.query is None):
            raise ValueError("references need exactly one of asset_ids or query")
        return self

    @property
    def most(self) -> int:
        """How many reference images this asks for at most."""
        return len(self.asset_ids) if self.asset_ids is not None else self.top_k


class GenerateItem(Strict):
    """One generation of a bulk job; what it leaves out comes from the request."""

    prompt: Text
    references: AssetReferences | SkipJsonSchema[None] = None
    count: Integer = Field(default=1, ge=1, le=MAX_VARIANTS)
    aspect_ratio: AspectRatio | SkipJsonSchema[None] = None
    image_size: ImageSize | SkipJsonSchema[None] = None
    metadata: Metadata = Field(
        default_factory=dict, description="kept on the item's result and its saved assets"
    )

    _no_nulls = field_validator("references", "aspect_ratio", "image_size", mode="before")(not_null)


class GenerateRequest(Strict):
    model_config = exactly_one("prompt", "items")

    prompt: Text | SkipJsonSchema[None] = None
    items: (
        Annotated[
            list[GenerateItem],
            Field(
                min_length=1,
                description="many generations in one job (ASSETRAG_MAX_GENERATE_ITEMS at "
                "most); references, aspect_ratio and image_size below are their defaults",
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    collection: CollectionName
    references: AssetReferences | None = None
    save_to_collection: bool = False
    count: Integer = Field(default=1, ge=1, le=MAX_VARIANTS)
    aspect_ratio: AspectRatio | None = None
    image_size: ImageSize | None = None
    mode: GenerateMode = Field(
        default="interactive",
        description="interactive: Gemini's regular API, images in seconds to minutes; batch: "
        "Gemini's Batch API at half the price, within 24 hours",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)

    _no_nulls = field_validator("prompt", "items", mode="before")(not_null)

    @model_validator(mode="after")
    def _one_form(self) -> GenerateRequest:
        if (self.prompt is None) == (self.items is None):
            raise ValueError("give a prompt or items, not both")
        return self

    @property
    def bulk(self) -> bool:
        return self.items is not None

    def generations(self) -> list[GenerateItem]:
        """The job's generations: its items with the request's defaults filled in, or the
        single prompt as one item."""
        if self.items is None:
            options: dict[str, Any] = {
                "references": self.references,
                "aspect_ratio": self.aspect_ratio,
                "image_size": self.image_size,
            }
            # built from the fields set (the item refuses an explicit null)
            given = {name: value for name, value in options.items() if value is not None}
            return [
                GenerateItem.model_validate({"prompt": self.prompt, "count": self.count, **given})
            ]
        return [
            item.model_copy(
                update={
                    "references": item.references or self.references,
                    "aspect_ratio": item.aspect_ratio or self.aspect_ratio,
                    "image_size": item.image_size or self.image_size,
                }
            )
            for item in self.items
        ]


class GeneratedImage(BaseModel):
    content_url: str
    mime_type: str
    width: int
    height: int
    asset_id: str | None = None
    item: int = Field(default=0, description="the index of the item that made it")


class Usage(BaseModel):
    """What Gemini was asked for and what it cost: per item, and summed on the job. A call
    whose answer a crash lost was made (and is assumed billed) all the same."""

    calls: int = Field(default=0, description="Gemini calls made, re-sent ones included")
    images_returned: int = Field(default=0, description="images Gemini's answers carried")
    images_billed: int = Field(
        default=0,
        description="images paid for: those returned, plus one per call whose answer was lost",
    )
    estimated_cost_usd: float | None = Field(
        default=None,
        description="images billed at the model's price per image (docs/generation.md); "
        "None for a model without a known price",
    )

    def plus(self, other: Usage) -> Usage:
        costs = [c for c in (self.estimated_cost_usd, other.estimated_cost_usd) if c is not None]
        return Usage(
            calls=self.calls + other.calls,
            images_returned=self.images_returned + other.images_returned,
            images_billed=self.images_billed + other.images_billed,
            estimated_cost_usd=round(sum(costs), 6) if costs else None,
        )


class GeneratedItem(BaseModel):
    """What one item of a generate job made (a line of its results file)."""

    index: int
    images: list[GeneratedImage]
    text: str = ""
    references: list[str] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)
    attempts: int = Field(
        default=1, description="times the item was sent to Gemini (2: a crash lost the first)"
    )
    usage: Usage = Field(default_factory=Usage)


class GenerateResult(Result):
    images: list[GeneratedImage] = Field(description="every item's images, in item order")
    text: str
    references: list[str]
    model: str
    mode: GenerateMode = "interactive"
    items: list[GeneratedItem] | None = Field(
        default=None, description="per item, for a job submitted with items"
    )
    usage: Usage = Field(default_factory=Usage, description="the job's Gemini calls and cost")
    batch: str | None = Field(default=None, description="the Gemini batch (mode batch)")
    batch_state: str | None = Field(
        default=None,
        description="the Gemini batch's state as last seen (JOB_STATE_PENDING, _RUNNING, "
        "_SUCCEEDED, ...)",
    )
