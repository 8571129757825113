"""The HTTP contract (v1): every state, shape, error code and URL that the API, the workers,
the CLI and the web UI share. Pure pydantic and the standard library, so any process (and
the API's start-up) can import it for free; nothing else redefines what is written here.
"""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

# ── names and ids ───────────────────────────────────────────────────────────────────────────

# Words of letters and digits joined by single underscores: a double underscore is kept for
# the service's own names (a tenant's prefix, a collection's versions).
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
COLLECTION_NAME_MAX = 64
ASSET_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Job and upload ids: token_urlsafe(18); checked before they become Redis keys.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Filter keys become part of a Milvus expression, so only plain identifiers are allowed.
FILTER_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TENANT_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")

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
    webhook_not_configured = "webhook_not_configured"
    # things that do not exist
    collection_not_found = "collection_not_found"
    asset_not_found = "asset_not_found"
    upload_not_found = "upload_not_found"
    job_not_found = "job_not_found"
    image_not_found = "image_not_found"
    content_not_found = "content_not_found"
    file_not_found = "file_not_found"
    # conflicts
    collection_exists = "collection_exists"
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


# ── jobs ────────────────────────────────────────────────────────────────────────────────────


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobState.completed, JobState.failed, JobState.cancelled})
ACTIVE_STATES = frozenset({JobState.queued, JobState.running})


class JobKind(StrEnum):
    embed = "embed"
    search = "search"
    generate = "generate"
    duplicates = "duplicates"
    reindex = "reindex"


class Progress(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0


class ItemError(BaseModel):
    index: int
    source: str
    code: str = Field(description="an ErrorCode value")
    message: str


class JobSummary(BaseModel):
    """A job without its result and item errors: what lists carry."""

    id: str
    kind: JobKind
    state: JobState
    progress: Progress = Field(default_factory=Progress)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorInfo | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


# ── requests ────────────────────────────────────────────────────────────────────────────────


class Strict(BaseModel):
    # Strict: what the schema calls a boolean or an integer must be one ("0" and 0 are not
    # false), so what the schema refuses, the API refuses.
    model_config = ConfigDict(extra="forbid", strict=True)


def _exactly_one(*names: str, **schema: Any) -> ConfigDict:
    """A model taking exactly one of these fields, said in its JSON schema too (so what the
    schema allows, the API accepts): each field is optional but never null there."""
    return ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"oneOf": [{"required": [n]} for n in names], **schema},
    )


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


def _whole_number(value: object) -> object:
    # JSON Schema counts 84.0 as an integer; strict pydantic would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_whole_number)]


def _not_null(value: object) -> object:
    # An explicit null would make "exactly one of" ambiguous; the schema does not allow it.
    if value is None:
        raise ValueError("leave the field out instead of sending null")
    return value


Metadata = dict[str, Any]
# Milvus filter literals: no control characters, finite numbers.
FilterString = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$")]
FilterValue = FilterString | int | Annotated[float, Field(allow_inf_nan=False)] | bool
FilterField = Annotated[str, Field(pattern=FILTER_FIELD_RE.pattern)]
# Text must hold more than blanks. The configured caps (ASSETRAG_MAX_QUERY_CHARS,
# ASSETRAG_MAX_PROMPT_CHARS) are lower; the published OpenAPI states them (api/openapi.py).
Text = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(lambda text: _not_blank(text)),
]


Webhook = Annotated[
    HttpUrl,
    Field(
        max_length=2048,
        description="called once when the job ends: a POST of the final job, signed as the "
        "Standard Webhooks specification says (webhook-id, webhook-timestamp, "
        "webhook-signature)",
    ),
]


class EmbedItem(BaseModel):
    model_config = _exactly_one("upload_id", "path", "url")

    upload_id: UploadId | SkipJsonSchema[None] = None
    path: Annotated[str, Field(min_length=1, max_length=4096)] | SkipJsonSchema[None] = None
    url: HttpUrl | SkipJsonSchema[None] = None
    metadata: Metadata = Field(default_factory=dict)

    _no_nulls = field_validator("upload_id", "path", "url", mode="before")(_not_null)

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
    _no_null_webhook = field_validator("webhook", mode="before")(_not_null)

    @model_validator(mode="after")
    def _something(self) -> EmbedRequest:
        if not self.items and self.directory is None:
            raise ValueError("give items, a directory, or both")
        return self


class SearchMode(StrEnum):
    vector = "vector"
    keyword = "keyword"
    hybrid = "hybrid"


# Which searches found a hit: CLIP's vectors, BM25 over the asset's words, or both.
Finder = Literal["vector", "keyword"]
VECTOR_ONLY: tuple[Finder, ...] = ("vector",)


class SearchQuery(BaseModel):
    # mode goes with text only: said with anyOf/not, which every schema-driven client (and
    # fuzzer) reads, where dependentRequired is often ignored
    model_config = _exactly_one(
        "text",
        "upload_id",
        "asset_id",
        anyOf=[{"required": ["text"]}, {"not": {"required": ["mode"]}}],
    )

    text: Text | SkipJsonSchema[None] = None
    upload_id: UploadId | SkipJsonSchema[None] = None
    asset_id: AssetId | SkipJsonSchema[None] = None
    # not strict: a JSON string becomes the enum (strict mode takes only an instance)
    mode: Annotated[SearchMode, Field(strict=False)] | SkipJsonSchema[None] = Field(
        default=None,
        description="text queries only: vector (CLIP, the default), keyword (BM25 over each "
        "asset's filename and metadata) or hybrid (both, fused by reciprocal rank)",
    )

    _no_nulls = field_validator("text", "upload_id", "asset_id", "mode", mode="before")(_not_null)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchQuery:
        given = [q for q in (self.text, self.upload_id, self.asset_id) if q is not None]
        if len(given) != 1:
            raise ValueError("each query needs exactly one of text, upload_id or asset_id")
        if self.mode is not None and self.text is None:
            raise ValueError("mode applies to text queries only")
        return self

    @property
    def search_mode(self) -> SearchMode:
        return self.mode or SearchMode.vector

    @property
    def finders(self) -> tuple[Finder, ...]:
        mode = self.search_mode
        if mode == SearchMode.hybrid:
            return ("vector", "keyword")
        return ("keyword",) if mode == SearchMode.keyword else ("vector",)

    @property
    def source(self) -> str:
        if self.asset_id is not None:
            return f"asset:{self.asset_id}"
        if self.upload_id is not None:
            return f"upload:{self.upload_id}"
        return f"text:{self.text}"


class SearchRequest(Strict):
    collection: CollectionName
    queries: list[SearchQuery] = Field(min_length=1, max_length=MAX_QUERIES)
    top_k: Integer = Field(default=10, ge=1, le=TOP_K_MAX)
    filter: dict[FilterField, FilterValue] | None = Field(
        default=None,
        description="equality on metadata fields (or filename, source, mime_type)",
        json_schema_extra={"additionalProperties": False},
    )
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(_not_null)


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


class AssetReferences(BaseModel):
    model_config = _exactly_one("asset_ids", "query")

    asset_ids: (
        Annotated[list[AssetId], Field(min_length=1, max_length=MAX_REFERENCES)]
        | SkipJsonSchema[None]
    ) = None
    query: Text | SkipJsonSchema[None] = None
    top_k: Integer = Field(default=3, ge=1, le=MAX_REFERENCES)

    _no_nulls = field_validator("asset_ids", "query", mode="before")(_not_null)

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

    _no_nulls = field_validator("references", "aspect_ratio", "image_size", mode="before")(
        _not_null
    )


class GenerateRequest(Strict):
    model_config = _exactly_one("prompt", "items")

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
    _no_null_webhook = field_validator("webhook", mode="before")(_not_null)

    _no_nulls = field_validator("prompt", "items", mode="before")(_not_null)

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


class CollectionCreate(Strict):
    name: CollectionName
    metric: Literal["COSINE"] = "COSINE"


ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        # a name OpenAI publishes, or a checkpoint's path on the workers
        pattern=r"^[A-Za-z0-9/][A-Za-z0-9@/._:+-]*$",
        description="a CLIP model the service allows (GET /v1/meta lists them)",
        examples=["ViT-L/14"],
    ),
]


class ReindexRequest(Strict):
    model: ModelName
    drop_previous: bool = Field(
        default=False,
        description="drop the version it replaces once the alias has moved (else it stays "
        "until DELETE /v1/collections/{name}/versions/{n})",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(_not_null)


class ReindexJob(ReindexRequest):
    """What a reindex job records: the request and the collection it names in its path."""

    collection: CollectionName


DEFAULT_DUPLICATE_THRESHOLD = 0.95


class DuplicatesRequest(Strict):
    collection: CollectionName
    threshold: float = Field(
        default=DEFAULT_DUPLICATE_THRESHOLD,
        ge=0.5,
        le=1.0,
        description="the least cosine similarity at which two assets count as duplicates",
    )
    webhook: Webhook | SkipJsonSchema[None] = None
    _no_null_webhook = field_validator("webhook", mode="before")(_not_null)


# ── results ─────────────────────────────────────────────────────────────────────────────────


class Upload(BaseModel):
    upload_id: str
    filename: str
    bytes: int
    sha256: str
    content_type: str


class UploadsResponse(BaseModel):
    uploads: list[Upload]


class Hit(BaseModel):
    asset_id: str
    score: float = Field(
        description="vector: cosine similarity; keyword: BM25 score; hybrid: the fused "
        "reciprocal-rank score"
    )
    found_by: list[Finder] = Field(
        default_factory=lambda: list(VECTOR_ONLY), description="which searches found it"
    )
    filename: str
    source: str
    metadata: Metadata
    content_url: str
    thumbnail_url: str


class Result(BaseModel):
    # Forbidding extras lets the union on Job.result pick the one shape that fits.
    model_config = ConfigDict(extra="forbid")


class EmbedResult(Result):
    collection: str
    asset_ids: list[str | None] | None = Field(
        default=None,
        description="in item order, null for a failed item; left out above 10,000 items",
    )


class SearchResult(Result):
    results: list[list[Hit]] = Field(description="one list per query, best first")


class GeneratedImage(BaseModel):
    content_url: str
    mime_type: str
    width: int
    height: int
    asset_id: str | None = None
    item: int = Field(default=0, description="the index of the item that made it")


class GeneratedItem(BaseModel):
    """What one item of a generate job made (a line of its results file)."""

    index: int
    images: list[GeneratedImage]
    text: str = ""
    references: list[str] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class GenerateResult(Result):
    images: list[GeneratedImage] = Field(description="every item's images, in item order")
    text: str
    references: list[str]
    model: str
    mode: GenerateMode = "interactive"
    items: list[GeneratedItem] | None = Field(
        default=None, description="per item, for a job submitted with items"
    )
    batch: str | None = Field(default=None, description="the Gemini batch (mode batch)")
    batch_state: str | None = Field(
        default=None,
        description="the Gemini batch's state as last seen (JOB_STATE_PENDING, _RUNNING, "
        "_SUCCEEDED, ...)",
    )


class ResultLine(BaseModel):
    """One line of GET /v1/jobs/{id}/results: an item's outcome, as OpenAI's batch output
    file gives it."""

    index: int
    status: Literal["succeeded", "failed", "cancelled"]
    result: Any = None
    error: ErrorInfo | None = None


class Cluster(BaseModel):
    asset_ids: list[str] = Field(description="in asset-id order")
    min_similarity: float = Field(description="the lowest similarity between two members")


CLUSTERS_SHOWN = 100


class DuplicatesResult(Result):
    collection: str
    threshold: float
    scanned: int = Field(description="assets compared")
    cluster_count: int
    duplicate_count: int = Field(description="assets in some cluster")
    clusters: list[Cluster] = Field(
        description=f"the largest {CLUSTERS_SHOWN} clusters, largest first; the rest page "
        "through GET /v1/jobs/{id}/clusters"
    )


class ReindexResult(Result):
    collection: str
    model: str
    dimension: int
    from_version: int
    version: int
    swapped: bool = Field(description="whether the collection answers from the new version")
    previous_dropped: bool = False


JobResult = EmbedResult | SearchResult | GenerateResult | DuplicatesResult | ReindexResult


class Job(JobSummary):
    result: JobResult | None = None
    errors: list[ItemError] = Field(
        default_factory=list, description="per-item failures of a job that ran to its end"
    )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A list answer: newest first where it has an order; `next_cursor` pages on."""

    data: list[T]
    next_cursor: str | None = None


class CollectionInfo(BaseModel):
    name: str
    model: str
    dimension: int
    metric: str
    count: int | None = Field(default=None, description="left out where counting was skipped")
    created_at: float
    version: int = Field(default=1, description="which build of the collection answers")
    keyword_search: bool = Field(
        default=False, description="whether its assets can be found by keyword (BM25)"
    )


class CollectionVersion(BaseModel):
    version: int
    model: str
    dimension: int
    count: int
    created_at: float
    keyword_search: bool
    current: bool = Field(description="whether the collection answers from this version")


class Asset(BaseModel):
    asset_id: str
    filename: str
    source: str
    mime_type: str
    width: int
    height: int
    metadata: Metadata
    created_at: float
    content_url: str
    thumbnail_url: str


class Bounds(BaseModel):
    min: int
    max: int
    default: int


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
        reference_top_k=field_bounds(AssetReferences, "top_k"),
        max_query_chars=max_query_chars,
        max_prompt_chars=max_prompt_chars,
        max_upload_bytes=max_upload_bytes,
        clip_model=clip_model,
        models=models,
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


# ── paths and URLs ──────────────────────────────────────────────────────────────────────────

V1 = "/v1"
UPLOADS_PATH = f"{V1}/uploads"
JOBS_PATH = f"{V1}/jobs"
COLLECTIONS_PATH = f"{V1}/collections"
META_PATH = f"{V1}/meta"


class ThumbnailSize(IntEnum):
    """Longest side of a thumbnail, in pixels."""

    small = 128
    medium = 256
    large = 512


THUMBNAIL_SIZES: tuple[int, ...] = tuple(ThumbnailSize)
DEFAULT_THUMBNAIL_SIZE = ThumbnailSize.medium
# A page's cursor is the created_at of the last job given.
CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"


def submit_path(kind: JobKind) -> str:
    return f"{JOBS_PATH}/{kind.value}"


def job_path(job_id: str) -> str:
    return f"{JOBS_PATH}/{job_id}"


def job_image_url(job_id: str, number: int) -> str:
    return f"{job_path(job_id)}/images/{number}"


def collection_path(name: str) -> str:
    return f"{COLLECTIONS_PATH}/{name}"


def versions_path(name: str) -> str:
    return f"{collection_path(name)}/versions"


def reindex_path(name: str) -> str:
    return f"{collection_path(name)}/reindex"


def results_path(job_id: str) -> str:
    return f"{job_path(job_id)}/results"


def generated_image_number(index: int, n: int) -> int:
    return index * IMAGES_PER_ITEM + n


def clusters_path(job_id: str) -> str:
    return f"{job_path(job_id)}/clusters"


def asset_url(collection: str, asset_id: str) -> str:
    return f"{collection_path(collection)}/assets/{asset_id}"


def asset_content_url(collection: str, asset_id: str) -> str:
    return f"{asset_url(collection, asset_id)}/content"


def thumbnail_url(collection: str, asset_id: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> str:
    return f"{asset_url(collection, asset_id)}/thumbnail?size={size}"
