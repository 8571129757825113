"""What the service says about itself: /v1/meta (the enums, bounds and limits a client reads
at start-up instead of copying the contract) and /readyz.
"""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, Field

from shared.contract.common import COLLECTION_NAME_RE, MAX_REFERENCES
from shared.contract.generate import (
    AspectRatio,
    GenerateMode,
    GenerateRequest,
    ImageSize,
)
from shared.contract.jobs import ACTIVE_STATES, TERMINAL_STATES, JobKind, JobState
from shared.contract.paths import DEFAULT_THUMBNAIL_SIZE, THUMBNAIL_SIZES
from shared.contract.references import ReferenceSource
from shared.contract.search import SearchMode, SearchRequest


class Bounds(BaseModel):
    min: int
    max: int
    default: int


class ModelInfo(BaseModel):
    """One model a collection may be made with or re-indexed to."""

    name: str
    dimension: int | None = Field(description="None until a worker has loaded an unlisted one")
    languages: str = Field(description='"en", or the languages its text tower reads')
    note: str = ""
    default: bool = False


class ServiceMeta(BaseModel):
    """What a client (the web UI among them) reads at start-up instead of copying this module:
    its enums and bounds, and the limits this server runs with."""

    job_states: list[str]
    terminal_states: list[str]
    cancellable_states: list[str]
    job_kinds: list[str]
    search_modes: list[str]
    aspect_ratios: list[str]
    image_sizes: list[str]
    thumbnail_sizes: list[int]
    default_thumbnail_size: int
    collection_name_pattern: str
    top_k: Bounds
    generate_count: Bounds
    reference_top_k: Bounds
    max_query_chars: int
    max_prompt_chars: int
    max_upload_bytes: int
    clip_model: str
    models: list[str] = Field(description="the CLIP models a collection may be re-indexed to")
    model_catalog: list[ModelInfo] = Field(
        default_factory=list, description="the same models with dimension, languages and a note"
    )
    generator_configured: bool
    generator_model: str = Field(default="", description="the Gemini image model in use")
    generate_modes: list[str] = Field(default_factory=lambda: list(get_args(GenerateMode)))
    max_generate_items: int = 0
    max_references: int = MAX_REFERENCES


def field_bounds(model: type[BaseModel], name: str) -> Bounds:
    """The ge/le bounds and default pydantic enforces on an int field."""
    info = model.model_fields[name]
    low = next(m.ge for m in info.metadata if hasattr(m, "ge"))
    high = next(m.le for m in info.metadata if hasattr(m, "le"))
    return Bounds(min=low, max=high, default=info.default)


def service_meta(
    *,
    max_query_chars: int,
    max_prompt_chars: int,
    max_upload_bytes: int,
    clip_model: str,
    models: list[str],
    generator_configured: bool,
    generator_model: str = "",
    max_generate_items: int = 0,
    model_options: tuple[int, frozenset[str], frozenset[str]] | None = None,
    model_catalog: list[ModelInfo] | None = None,
) -> ServiceMeta:
    """`model_options`: (references, image sizes, aspect ratios) the image model takes, when
    known; the lists then hold only those."""
    ratios, sizes = list(get_args(AspectRatio)), list(get_args(ImageSize))
    max_references = MAX_REFERENCES
    if model_options is not None:
        max_references, taken_sizes, taken_ratios = model_options
        ratios = [r for r in ratios if r in taken_ratios]
        sizes = [s for s in sizes if s in taken_sizes]
    return ServiceMeta(
        job_states=[s.value for s in JobState],
        terminal_states=sorted(TERMINAL_STATES),
        cancellable_states=sorted(ACTIVE_STATES),
        job_kinds=[k.value for k in JobKind],
        search_modes=[m.value for m in SearchMode],
        aspect_ratios=ratios,
        image_sizes=sizes,
        thumbnail_sizes=list(THUMBNAIL_SIZES),
        default_thumbnail_size=DEFAULT_THUMBNAIL_SIZE,
        collection_name_pattern=COLLECTION_NAME_RE.pattern,
        top_k=field_bounds(SearchRequest, "top_k"),
        generate_count=field_bounds(GenerateRequest, "count"),
        reference_top_k=field_bounds(ReferenceSource, "top_k"),
        max_query_chars=max_query_chars,
        max_prompt_chars=max_prompt_chars,
        max_upload_bytes=max_upload_bytes,
        clip_model=clip_model,
        models=models,
        model_catalog=model_catalog or [],
        generator_configured=generator_configured,
        generator_model=generator_model,
        max_generate_items=max_generate_items,
        max_references=max_references,
    )


class Readiness(BaseModel):
    ready: bool
    redis: str = Field(description='"ok" or the error')
    milvus: str = Field(description='"ok" or the error')
    queues: dict[str, list[str]] = Field(description="queue name to its live workers")
