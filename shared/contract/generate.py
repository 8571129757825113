"""The generate job's shapes: aspect ratios and sizes, one generation or many (each drawing on
reference sources, shared/contract/references.py), and the images it answers with.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
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
from shared.contract.kits import BrandScore, KitRef
from shared.contract.references import (
    ROLE_ORDER,
    References,
    ReferenceSource,
    UsedSource,
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
# One scene in several formats: the first made, then sent as the base of the others.
MAX_FORMATS = 4
# Images kept per item: an item's images are numbered index * IMAGES_PER_ITEM + n, so items
# finishing side by side never share a number.
IMAGES_PER_ITEM = 16


def generated_image_number(index: int, n: int) -> int:
    return index * IMAGES_PER_ITEM + n


Formats = Annotated[
    list[AspectRatio],
    Field(
        min_length=1,
        max_length=MAX_FORMATS,
        json_schema_extra={"uniqueItems": True},
        description="the same scene in each ratio: the first is made, then sent as the base "
        "image of the others so they look alike",
    ),
]
# aspect_ratio or aspect_ratios, never both (said in the schema too)
_ONE_RATIO_FORM: dict[str, Any] = {"not": {"required": ["aspect_ratio", "aspect_ratios"]}}


def _unique(ratios: list[str] | None) -> list[str] | None:
    if ratios is not None and len(set(ratios)) != len(ratios):
        raise ValueError("each aspect ratio once")
    return ratios


def _one_list(value: object) -> object:
    return [value] if isinstance(value, ReferenceSource) else value


class GenerateItem(Strict):
    """One generation of a bulk job; what it leaves out comes from the request."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_RATIO_FORM)

    prompt: Text
    references: References | ReferenceSource | SkipJsonSchema[None] = Field(
        default=None, description="a list of sources (or one): replaces the request's"
    )
    count: Integer = Field(default=1, ge=1, le=MAX_VARIANTS)
    aspect_ratio: AspectRatio | SkipJsonSchema[None] = None
    aspect_ratios: Formats | SkipJsonSchema[None] = None
    image_size: ImageSize | SkipJsonSchema[None] = None
    kit: KitRef | SkipJsonSchema[None] = Field(
        default=None, description="a brand kit (or name@N): its references and style, checked"
    )
    metadata: Metadata = Field(
        default_factory=dict, description="kept on the item's result and its saved assets"
    )

    _no_nulls = field_validator(
        "references", "aspect_ratio", "aspect_ratios", "image_size", "kit", mode="before"
    )(not_null)
    _listed = field_validator("references", mode="after")(_one_list)
    _unique_ratios = field_validator("aspect_ratios", mode="after")(_unique)

    @model_validator(mode="after")
    def _one_ratio_form(self) -> GenerateItem:
        if self.aspect_ratio is not None and self.aspect_ratios is not None:
            raise ValueError("give aspect_ratio or aspect_ratios, not both")
        return self

    @property
    def sources(self) -> list[ReferenceSource]:
        refs = self.references
        return [] if refs is None else [refs] if isinstance(refs, ReferenceSource) else refs

    @property
    def formats(self) -> list[str | None]:
        """The ratios to make, in order: one (maybe None, the model's default) or several."""
        return list(self.aspect_ratios) if self.aspect_ratios else [self.aspect_ratio]

    @property
    def image_count(self) -> int:
        """Reference images sent at most in one call: every source's, plus the first format's
        output in the calls for the other formats (which leave the original base out)."""
        total = sum(source.most for source in self.sources)
        if len(self.formats) > 1:
            total += 1 - sum(s.most for s in self.sources if s.role == "base")
        return total

    def ordered_sources(self) -> list[tuple[int, ReferenceSource]]:
        """The sources in the order their images are sent (base, subjects, then as given),
        each with its place in the request."""
        first = ROLE_ORDER[:2]  # base, subject; style and item keep the order given
        return sorted(
            enumerate(self.sources),
            key=lambda pair: first.index(pair[1].role) if pair[1].role in first else len(first),
        )


class GenerateRequest(Strict):
    model_config = exactly_one("prompt", "items", allOf=[_ONE_RATIO_FORM])

    prompt: Text | SkipJsonSchema[None] = None
    items: (
        Annotated[
            list[GenerateItem],
            Field(
                min_length=1,
                description="many generations in one job (ASSETRAG_MAX_GENERATE_ITEMS at "
                "most); references, aspect_ratio(s) and image_size below are their defaults",
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    collection: CollectionName
    references: References | ReferenceSource | None = Field(
        default=None,
        description="the reference sources, in order (one source alone is taken as a list "
        "of one); at most 14 images in all, a query counting its top_k",
    )
    save_to_collection: bool = False
    count: Integer = Field(default=1, ge=1, le=MAX_VARIANTS)
    aspect_ratio: AspectRatio | None = None
    aspect_ratios: Formats | SkipJsonSchema[None] = None
    image_size: ImageSize | None = None
    kit: KitRef | SkipJsonSchema[None] = Field(
        default=None,
        description="a brand kit (or name@N) for every item: its references go in as style "
        "sources, its style text into the prompt, and each output is scored against it",
    )
    mode: GenerateMode = Field(
        default="interactive",
        description="interactive: Gemini's regular API, images in seconds to minutes; batch: "
        "Gemini's Batch API at half the price, within 24 hours",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(not_null)

    _no_nulls = field_validator("prompt", "items", "aspect_ratios", "kit", mode="before")(not_null)
    _listed = field_validator("references", mode="after")(_one_list)
    _unique_ratios = field_validator("aspect_ratios", mode="after")(_unique)

    @model_validator(mode="after")
    def _one_form(self) -> GenerateRequest:
        if (self.prompt is None) == (self.items is None):
            raise ValueError("give a prompt or items, not both")
        if self.aspect_ratio is not None and self.aspect_ratios is not None:
            raise ValueError("give aspect_ratio or aspect_ratios, not both")
        return self

    @property
    def bulk(self) -> bool:
        return self.items is not None

    def generations(self) -> list[GenerateItem]:
        """The job's generations: its items with the request's defaults filled in, or the
        single prompt as one item."""
        ratio = {"aspect_ratio": self.aspect_ratio, "aspect_ratios": self.aspect_ratios}
        if self.items is None:
            options: dict[str, Any] = {
                "references": self.references,
                "image_size": self.image_size,
                "kit": self.kit,
                **ratio,
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
                    "image_size": item.image_size or self.image_size,
                    "kit": item.kit or self.kit,
                    **({} if item.aspect_ratio or item.aspect_ratios else ratio),
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
    aspect_ratio: str | None = Field(
        default=None, description="the ratio asked for (None: the model's default)"
    )
    brand: BrandScore | None = Field(default=None, description="its scores against the kit")


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
    references: list[str] = Field(
        default_factory=list, description="the asset ids it drew on, in the order sent"
    )
    sources: list[UsedSource] = Field(
        default_factory=list, description="every source as used, in the order sent"
    )
    metadata: Metadata = Field(default_factory=dict)
    attempts: int = Field(
        default=1, description="times the item was sent to Gemini (2: a crash lost the first)"
    )
    brand: BrandScore | None = Field(
        default=None,
        description="with a kit: the kept attempt's scores, how many attempts it took, and "
        "passed (false, code off_brand, when none passed)",
    )
    usage: Usage = Field(default_factory=Usage)


class GenerateResult(Result):
    images: list[GeneratedImage] = Field(description="every item's images, in item order")
    text: str
    references: list[str]
    sources: list[UsedSource] = Field(
        default_factory=list, description="the single form's sources as used, in order sent"
    )
    model: str
    mode: GenerateMode = "interactive"
    items: list[GeneratedItem] | None = Field(
        default=None, description="per item, for a job submitted with items"
    )
    usage: Usage = Field(default_factory=Usage, description="the job's Gemini calls and cost")
    brand: BrandScore | None = Field(
        default=None, description="the single form with a kit: the kept attempt's scores"
    )
    batch: str | None = Field(default=None, description="the Gemini batch (mode batch)")
    batch_state: str | None = Field(
        default=None,
        description="the Gemini batch's state as last seen (JOB_STATE_PENDING, _RUNNING, "
        "_SUCCEEDED, ...)",
    )
