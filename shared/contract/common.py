"""What every part of the contract is built from: the names and ids the service accepts, the
bounds pydantic enforces, the error codes, and the field types and checks the request models
share. It imports nothing else from the contract.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, HttpUrl

# ── names and ids ───────────────────────────────────────────────────────────────────────────

# Words of letters and digits joined by single underscores: a double underscore is kept for
# the service's own names (a tenant's prefix, a collection's versions).
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
COLLECTION_NAME_MAX = 64
ASSET_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Job and upload ids: new_token(); checked before they become Redis keys.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Filter keys become part of a Milvus expression, so only plain identifiers are allowed.
FILTER_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TENANT_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")


def new_token() -> str:
    """A job or upload id: 24 URL-safe characters that never begin with "-", which a shell
    command such as `assetrag jobs <id>` would take for an option (one id in 64 did)."""
    while (token := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return token


CollectionName = Annotated[
    str,
    Field(
        pattern=COLLECTION_NAME_RE.pattern,
        max_length=COLLECTION_NAME_MAX,
        description="words of letters and digits joined by single underscores, starting with "
        "a letter, at most 64 characters",
        examples=["products"],
    ),
]
AssetId = Annotated[
    str, Field(pattern=ASSET_ID_RE.pattern, description="SHA-256 of the image's bytes")
]
UploadId = Annotated[str, Field(pattern=TOKEN_RE.pattern)]

# Bounds pydantic enforces; the configurable caps (ASSETRAG_MAX_*) are rules on top.
MAX_TEXT = 10_000
MAX_QUERIES = 256
TOP_K_MAX = 100
MAX_REFERENCES = 14
MAX_WAIT_S = 30.0


def valid_collection_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= COLLECTION_NAME_MAX
        and bool(COLLECTION_NAME_RE.fullmatch(name))
    )


def valid_token(value: str) -> bool:
    return isinstance(value, str) and bool(TOKEN_RE.fullmatch(value))


# ── errors ──────────────────────────────────────────────────────────────────────────────────


class ErrorCode(StrEnum):
    """Every code a request, a job or an item can fail with; the API maps each to a status."""

    # the request itself
    malformed_json = "malformed_json"
    invalid_request = "invalid_request"
    unauthorized = "unauthorized"
    rate_limited = "rate_limited"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    idempotency_key_reused = "idempotency_key_reused"
    query_too_long = "query_too_long"
    prompt_too_long = "prompt_too_long"
    too_many_items = "too_many_items"
    option_not_supported = "option_not_supported"
    invalid_references = "invalid_references"
    webhook_not_configured = "webhook_not_configured"
    # things that do not exist
    collection_not_found = "collection_not_found"
    asset_not_found = "asset_not_found"
    upload_not_found = "upload_not_found"
    job_not_found = "job_not_found"
    kit_not_found = "kit_not_found"
    image_not_found = "image_not_found"
    content_not_found = "content_not_found"
    file_not_found = "file_not_found"
    # conflicts
    collection_exists = "collection_exists"
    kit_exists = "kit_exists"
    model_mismatch = "model_mismatch"
    job_finished = "job_finished"
    job_kind_mismatch = "job_kind_mismatch"
    job_not_finished = "job_not_finished"
    version_in_use = "version_in_use"
    reindex_running = "reindex_running"
    # search
    keyword_search_unavailable = "keyword_search_unavailable"
    version_not_found = "version_not_found"
    model_not_allowed = "model_not_allowed"
    # image bytes
    file_too_large = "file_too_large"
    decompression_bomb = "decompression_bomb"
    empty_file = "empty_file"
    not_an_image = "not_an_image"
    corrupt_image = "corrupt_image"
    # server paths and URLs
    paths_disabled = "paths_disabled"
    path_outside_roots = "path_outside_roots"
    not_a_file = "not_a_file"
    not_a_directory = "not_a_directory"
    unsupported_url = "unsupported_url"
    unresolvable_host = "unresolvable_host"
    forbidden_address = "forbidden_address"
    fetch_failed = "fetch_failed"
    too_many_redirects = "too_many_redirects"
    # generation
    generator_not_configured = "generator_not_configured"
    blocked = "blocked"
    no_image = "no_image"
    upstream_error = "upstream_error"
    timeout = "timeout"
    no_references_found = "no_references_found"
    off_brand = "off_brand"
    # the service
    work_lost = "work_lost"
    work_timed_out = "work_timed_out"
    model_not_loaded = "model_not_loaded"
    vector_store_unavailable = "vector_store_unavailable"
    redis_unavailable = "redis_unavailable"
    blob_store_unavailable = "blob_store_unavailable"
    internal_error = "internal_error"


class ErrorInfo(BaseModel):
    code: str = Field(description="an ErrorCode value")
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorInfo


# ── building blocks of requests and results ─────────────────────────────────────────────────


class Strict(BaseModel):
    # Strict: what the schema calls a boolean or an integer must be one ("0" and 0 are not
    # false), so what the schema refuses, the API refuses.
    model_config = ConfigDict(extra="forbid", strict=True)


def exactly_one(*names: str, **schema: Any) -> ConfigDict:
    """A model taking exactly one of these fields, said in its JSON schema too (so what the
    schema allows, the API accepts): each field is optional but never null there."""
    return ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"oneOf": [{"required": [n]} for n in names], **schema},
    )


# JSON Schema's `\S` is ECMAScript's: these are its white space (Python's str.isspace adds
# the ASCII separators \x1c-\x1f and \x85, which the schema counts as text).
_ECMA_BLANK = re.compile(
    r"[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*"
)


def _not_blank(text: str) -> str:
    if _ECMA_BLANK.fullmatch(text):
        raise ValueError("must not be blank")
    return text


def _whole_number(value: object) -> object:
    # JSON Schema counts 84.0 as an integer; strict pydantic would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_whole_number)]


def not_null(value: object) -> object:
    # An explicit null would make "exactly one of" ambiguous; the schema does not allow it.
    if value is None:
        raise ValueError("leave the field out instead of sending null")
    return value


Metadata = dict[str, Any]
# Text must hold more than blanks. The configured caps (ASSETRAG_MAX_QUERY_CHARS,
# ASSETRAG_MAX_PROMPT_CHARS) are lower; the published OpenAPI states them (api/openapi.py).
Text = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(lambda text: _not_blank(text)),
]


WEBHOOK_MAX = 2048


def _webhook_length(value: object) -> object:
    # The bound is on the URL as sent, which is what the schema's maxLength says: pydantic's
    # own max_length would measure the normalised URL (a trailing "/" added, non-ASCII
    # percent-encoded), refusing URLs the schema allows.
    if isinstance(value, str) and len(value) > WEBHOOK_MAX:
        raise ValueError(f"a webhook URL is at most {WEBHOOK_MAX} characters")
    return value


Webhook = Annotated[
    HttpUrl,
    BeforeValidator(_webhook_length),
    Field(
        description="called once when the job ends: a POST of the final job, signed as the "
        "Standard Webhooks specification says (webhook-id, webhook-timestamp, "
        "webhook-signature)",
        json_schema_extra={"maxLength": WEBHOOK_MAX},
    ),
]


class Result(BaseModel):
    # Forbidding extras lets the union on Job.result pick the one shape that fits.
    model_config = ConfigDict(extra="forbid")
