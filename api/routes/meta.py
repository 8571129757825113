"""What clients read at start-up: the contract's enums and bounds and this server's limits."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep
from api.errors import responses
from api.paths import relative
from shared import contract
from shared.clip.catalog import describe
from shared.contract import ServiceMeta
from shared.contract.meta import ModelInfo
from shared.rules import capabilities

router = APIRouter(prefix=contract.META_PATH, tags=["meta"])


@router.get(relative(router, contract.META_PATH), response_model=ServiceMeta, responses=responses())
def read_meta(caller: CallerDep) -> ServiceMeta:
    """Job states (terminal and cancellable ones), kinds, aspect ratios, image and thumbnail
    sizes, request bounds, upload limits and the models offered, so a client never copies
    them. Like every /v1 route it needs the key when keys are on, so it doubles as a check."""
    settings = caller.state.settings
    caps = capabilities(settings.gemini_model)
    return contract.service_meta(
        max_query_chars=settings.max_query_chars,
        max_prompt_chars=settings.max_prompt_chars,
        max_upload_bytes=settings.max_upload_bytes,
        clip_model=settings.clip_model,
        models=settings.allowed_models,
        model_catalog=model_catalog(caller),
        generator_configured=bool(settings.gemini_api_key),
        generator_model=settings.gemini_model,
        max_generate_items=settings.max_generate_items,
        model_options=(
            None if caps is None else (caps.max_references, caps.image_sizes, caps.aspect_ratios)
        ),
    )


def model_catalog(caller: CallerDep) -> list[ModelInfo]:
    """Every model a collection may use: its dimension (as a worker recorded it, else the
    published one), languages and a note; sync, since the registry reads Redis."""
    settings, registry = caller.state.settings, caller.state.models
    infos = []
    for name in settings.allowed_models:
        languages, note = describe(name)
        infos.append(
            ModelInfo(
                name=name,
                dimension=registry.dimension(name),
                languages=languages,
                note=note,
                default=name == settings.clip_model,
            )
        )
    return infos
