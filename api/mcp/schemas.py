"""Each tool's input schema, generated from the contract's pydantic models (never written a
second time): a tool takes a request model whole (`generate` takes GenerateRequest's
fields, whatever they grow into) or picks fields of one (`search_assets` flattens one
SearchQuery into SearchRequest's fields), plus the few arguments that only a tool has
(`wait`, `image_base64`, `urls`/`paths`), themselves small pydantic models here.

The API validates every request the tools send, so an argument the schema lets through but
the service refuses comes back as the API's own error code and message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from shared.contract import (
    TOKEN_RE,
    AssetId,
    BrandCheckRequest,
    CollectionName,
    DuplicatesRequest,
    EmbedItem,
    EmbedRequest,
    GenerateRequest,
    SearchQuery,
    SearchRequest,
)

Schema = dict[str, Any]
# How long one tool call may wait for its job (in long-polls of the API's 30 s at most).
MAX_TOOL_WAIT_S = 600.0
# Keys of a model's own schema that describe the object itself, not its fields.
_OBJECT_KEYS = {"title", "type", "properties", "required", "$defs", "additionalProperties"}


class Waiting(BaseModel):
    wait: float = Field(
        default=60.0,
        ge=0,
        le=MAX_TOOL_WAIT_S,
        description="seconds to wait for the job to end, sending progress notifications "
        "meanwhile; 0 answers the job at once (poll it with get_job)",
    )


class JobWaiting(Waiting):
    wait: float = Field(
        default=0.0,
        ge=0,
        le=MAX_TOOL_WAIT_S,
        description="seconds to wait for the job to end, sending progress notifications "
        "meanwhile; 0 answers at once",
    )


class JobArgs(BaseModel):
    job_id: str = Field(pattern=TOKEN_RE.pattern, description="a job's id, as a tool gave it")


class AssetArgs(BaseModel):
    collection: CollectionName
    asset_id: AssetId


class ImageQuery(BaseModel):
    image_base64: str = Field(
        min_length=1,
        description="an example image (PNG, JPEG, WebP, ...), base64-encoded: finds assets "
        "that look like it",
    )


def _whole(model: type[BaseModel]) -> Schema:
    return model.model_json_schema()


def picked(model: type[BaseModel], *names: str, rename: Mapping[str, str] | None = None) -> Schema:
    """Some of a model's fields, as its schema states them (optionally under a tool's own
    names)."""
    whole, new = _whole(model), dict(rename or {})
    return {
        "properties": {new.get(n, n): whole["properties"][n] for n in names},
        "required": [new.get(n, n) for n in whole.get("required", []) if n in names],
        "$defs": whole.get("$defs", {}),
    }


def listed(model: type[BaseModel], name: str, as_name: str, description: str) -> Schema:
    """A list of one field of a model (ingest's `urls` from EmbedItem's `url`)."""
    field = _whole(model)["properties"][name]
    array = {"type": "array", "items": field, "minItems": 1, "description": description}
    return {"properties": {as_name: array}, "required": [], "$defs": {}}


def whole(model: type[BaseModel]) -> Schema:
    """A model's every field and its own rules (a oneOf on the object, say)."""
    return {key: value for key, value in _whole(model).items() if key != "title"}


def combined(*parts: Schema) -> Schema:
    """One object schema of the parts' fields; nothing else is accepted."""
    out: Schema = {"type": "object", "properties": {}, "required": []}
    defs: Schema = {}
    for part in parts:
        out["properties"].update(part.get("properties", {}))
        required = part.get("required", [])
        out["required"] += [name for name in required if name not in out["required"]]
        defs.update(part.get("$defs", {}))
        out.update({k: v for k, v in part.items() if k not in _OBJECT_KEYS})
    out["additionalProperties"] = False
    if defs:
        out["$defs"] = defs
    return out


SEARCH = combined(
    picked(SearchRequest, "collection", "top_k", "filter", "min_score"),
    picked(SearchQuery, "text", "asset_id", "mode", rename={"text": "query"}),
    picked(ImageQuery, "image_base64"),
)
GET_ASSET = combined(whole(AssetArgs))
LIST_COLLECTIONS = combined()
INGEST = combined(
    picked(EmbedRequest, "collection", "directory"),
    listed(EmbedItem, "url", "urls", "images to fetch over http(s) and embed"),
    listed(EmbedItem, "path", "paths", "files or folders on the server, under its library roots"),
    whole(Waiting),
)
GET_JOB = combined(whole(JobArgs), whole(JobWaiting))
CANCEL_JOB = combined(whole(JobArgs))
GENERATE = combined(whole(GenerateRequest), whole(Waiting))
FIND_DUPLICATES = combined(whole(DuplicatesRequest), whole(Waiting))
LIST_KITS = combined()
BRAND_CHECK = combined(whole(BrandCheckRequest), whole(Waiting))
