"""Brand kits: a tenant's style rules (reference assets, a style text, a palette, the checks
each output must pass), kept in versions; an output's scores against one; the library audit.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contract.common import (
    AssetId,
    CollectionName,
    Integer,
    Result,
    Strict,
    Text,
    Webhook,
    not_null,
)
from shared.contract.search import FilterField, FilterValue

KIT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# "name" (its latest version) or "name@N" (that version); no named groups: the pattern is
# published in the JSON schema, whose regexes are ECMAScript's
KIT_REF_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}(?:@[1-9][0-9]{0,5})?$")
MAX_KIT_REFERENCES = 10
MAX_PALETTE = 8
MAX_KIT_ATTEMPTS = 5

KitName = Annotated[
    str,
    Field(
        pattern=KIT_NAME_RE.pattern,
        description="lower-case letters, digits and dashes, at most 63 characters",
        examples=["lunar-campaign"],
    ),
]
KitRef = Annotated[
    str,
    Field(
        pattern=KIT_REF_RE.pattern,
        description='a kit by name (its latest version) or "name@N" (version N)',
        examples=["lunar-campaign", "lunar-campaign@2"],
    ),
]
Colour = Annotated[
    str, Field(pattern=r"^#[0-9A-Fa-f]{6}$", description="#RRGGBB", examples=["#C8102E"])
]


def parse_kit_ref(ref: str) -> tuple[str, int | None]:
    if KIT_REF_RE.fullmatch(ref) is None:
        raise ValueError(f"not a kit name: {ref!r}")
    name, _, version = ref.partition("@")
    return name, int(version) if version else None


class KitChecks(Strict):
    """What every output made with the kit must pass; one that falls short is made again, up
    to `attempts` calls in all."""

    min_similarity: Annotated[float, Field(ge=-1.0, le=2.0)] | SkipJsonSchema[None] = Field(
        default=None,
        description="cosine between the output's CLIP embedding and the mean of the kit "
        "references' (1.0: the same image); left out, not checked",
    )
    max_palette_distance: Annotated[float, Field(ge=0.0, le=200.0)] | SkipJsonSchema[None] = Field(
        default=None,
        description="the mean CIEDE2000 distance from the output's dominant colours (by "
        "pixel share) to the nearest palette colour; left out, not checked",
    )
    attempts: Integer = Field(default=1, ge=1, le=MAX_KIT_ATTEMPTS)

    _no_nulls = field_validator("min_similarity", "max_palette_distance", mode="before")(not_null)


class KitBody(Strict):
    """A kit's rules, as created (POST) or replaced by a new version (PUT)."""

    collection: CollectionName = Field(
        description="where the references are (any collection of yours); its CLIP model "
        "scores the outputs"
    )
    references: Annotated[list[AssetId], Field(min_length=1, max_length=MAX_KIT_REFERENCES)] = (
        Field(description="sent as style references with every generation")
    )
    style: Text | SkipJsonSchema[None] = Field(
        default=None, description="added to every prompt made with the kit"
    )
    palette: Annotated[list[Colour], Field(max_length=MAX_PALETTE)] = Field(default_factory=list)
    checks: KitChecks = Field(default_factory=KitChecks)

    _no_nulls = field_validator("style", mode="before")(not_null)


class KitCreate(KitBody):
    name: KitName


class Kit(BaseModel):
    name: str
    version: int
    collection: str
    references: list[str]
    style: str | None = None
    palette: list[str] = Field(default_factory=list)
    checks: KitChecks = Field(default_factory=KitChecks)
    created_at: float
    deleted: bool = Field(
        default=False, description="deleted: kept for the lineage of what it made"
    )

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class BrandScore(BaseModel):
    """An image against a kit."""

    kit: str = Field(description="name@version")
    similarity: float | None = None
    palette_distance: float | None = None
    passed: bool
    attempts: int = Field(default=1, description="attempts it took (the best one is kept)")
    code: str | None = Field(default=None, description="off_brand when no attempt passed")


class BrandCheckRequest(Strict):
    collection: CollectionName
    kit: KitRef
    filter: dict[FilterField, FilterValue] | SkipJsonSchema[None] = Field(
        default=None,
        description="equality on metadata fields: the assets to check",
        json_schema_extra={"additionalProperties": False},
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_nulls = field_validator("filter", "webhook", mode="before")(not_null)


class AssetScore(BaseModel):
    asset_id: str
    filename: str
    similarity: float
    palette_distance: float | None = None
    passed: bool


class BrandCheckResult(Result):
    kit: str = Field(description="name@version")
    checked: int
    passed: int
    failed: int
    worst: list[AssetScore] = Field(
        description="the assets that fell furthest short, worst first (the results file has all)"
    )
