"""The OpenAPI document the API publishes: FastAPI's, with the configured input caps.

The contract's models bound text and lists generously; the caps a deployment sets
(ASSETRAG_MAX_QUERY_CHARS, ASSETRAG_MAX_PROMPT_CHARS, ASSETRAG_MAX_ITEMS_PER_JOB) and the
models offered (ASSETRAG_CLIP_MODEL, ASSETRAG_CLIP_MODELS) are checked
by shared/rules.py with their own error codes. Publishing them keeps the promise that what
the schema allows, the API accepts.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.settings import Settings


def configured_caps(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """(component, property) → the JSON-schema bounds the settings impose."""
    query = {"maxLength": settings.max_query_chars}
    return {
        ("SearchQuery", "text"): query,
        ("ReferenceSource", "query"): query,
        ("GenerateRequest", "prompt"): {"maxLength": settings.max_prompt_chars},
        ("GenerateItem", "prompt"): {"maxLength": settings.max_prompt_chars},
        ("GenerateRequest", "items"): {"maxItems": settings.max_generate_items},
        ("EmbedRequest", "items"): {"maxItems": settings.max_items_per_job},
        # the models this server offers to re-index to
        ("ReindexRequest", "model"): {"enum": settings.allowed_models},
        ("CollectionCreate", "model"): {"enum": settings.allowed_models},
    }


def publish_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema["components"]["schemas"]
            for (component, prop), bounds in configured_caps(settings).items():
                components[component]["properties"][prop].update(bounds)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
