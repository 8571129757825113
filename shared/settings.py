"""The one reader of the environment: every setting, with the names DESIGN.md fixes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.clip.catalog import OFFERED, open_clip_parts
from shared.clip.registry import KNOWN_DIMENSIONS
from shared.contract import TENANT_RE

# shared.tasks.QUEUES, which imports this module (a test keeps the two equal).
QUEUE_NAMES = ("embed", "query", "generate", "default")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSETRAG_", env_file=".env", extra="ignore", populate_by_name=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    milvus_uri: str | None = None
    data_dir: Path = Path("./data")
    blob_uri: str | None = None
    # An s3:// blob store's endpoint, region and credentials: the standard AWS variables
    # (unset ones fall back to boto3's own chain: ~/.aws, instance roles).
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ASSETRAG_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
        ),
    )
    s3_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY")
    )
    aws_session_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SESSION_TOKEN")
    )
    s3_timeout_s: float = Field(default=10.0, gt=0)
    clip_model: str = "ViT-B/32"
    # Models a collection may be re-indexed to, besides clip_model and OpenAI's published
    # ones (names or checkpoint paths on the workers), and how many a worker keeps loaded.
    clip_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_models: int = Field(default=2, ge=1)
    # open_clip models (open_clip:<arch>/<tag>): an offline folder holding <arch>/<tag>/ as
    # `assetrag fetch-model --to` writes it, read before any download; and where first-use
    # downloads go (the Hugging Face cache when unset).
    model_dir: Path | None = None
    model_cache: Path | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # Read (never set here) to count the GPUs `assetrag up` gives one embed worker each.
    cuda_visible_devices: str | None = Field(
        default=None, validation_alias=AliasChoices("CUDA_VISIBLE_DEVICES")
    )
    # auto: fp16 on CUDA, bf16 autocast on a CPU with native bf16, else fp32. int8 is the
    # onnx backend's image tower alone (its text tower runs as auto would).
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    # Where the image tower runs: torch, or ONNX Runtime on the CPU (fp32, or int8 weights by
    # dynamic quantisation), refused at load below this cosine to torch fp32 on probe images.
    backend: Literal["torch", "onnx"] = "torch"
    onnx_min_cosine: float = Field(default=0.99, gt=0, le=1)
    # Query workers: texts arriving together (from many jobs' threads) are encoded in one
    # call, gathered for up to this window and capped at this size; threads per worker; a
    # per-model LRU cache of text embeddings (0: off). The cap is a power of two because
    # text batches are padded to one (clip_encoder): under 20 clients, 16 threads' texts came
    # in batches of 7 and 9, and each 9 paid for 16 rows; capped at 8, 125 -> 154 searches/s.
    query_batch_window_ms: float = Field(default=2.0, ge=0, le=100)
    query_batch_max: int = Field(default=8, ge=1, le=1024)
    query_concurrency: int = Field(default=16, ge=1, le=256)
    text_cache_size: int = Field(default=4096, ge=0)
    # torch's intra-op threads in a worker that serves queries but not embeds (0: torch's
    # default, one per core). A short query parallelises poorly, and threads that wait for
    # each other burn the cores the API, Redis and Milvus need: on 2 cores under 20 clients
    # one thread served 135 searches/s against 110 with two, at the same single-search
    # latency (docs/speed.md). With cores to spare, run more query workers.
    query_torch_threads: int = Field(default=1, ge=0, le=256)
    # A worker that serves queries but not embeds may encode its texts in a child process of
    # its own, out of reach of its threads' GIL (workers/text_process.py). Off by default:
    # on three 2-core machines with AVX-512 BF16, 20 clients got 131-158 searches/s with it
    # and 139-161 without, within run-to-run noise, for a second copy of the model and one
    # more process on the cores (docs/speed.md). It was built for a Zen 3 in fp32, where
    # a batch of 8 texts took 407 ms in the worker against 219 ms bare; try it there.
    query_text_process: bool = False
    library_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # /mcp's DNS-rebinding guard (the MCP SDK's transport security) lets localhost through;
    # behind a real host name it answers 421 unless that Host (and a browser's Origin) is
    # listed here, e.g. assets.example.com. "*" turns the check off (a proxy checks them).
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    gemini_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ASSETRAG_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"
        ),
    )
    gemini_model: str = "gemini-3.1-flash-image"
    gemini_base_url: str | None = None
    gemini_rpm: int = Field(default=60, ge=0)  # 0 switches the shared limiter off
    gemini_concurrency: int = Field(default=16, ge=1)
    gemini_timeout_s: float = Field(default=120.0, gt=0)
    gemini_max_attempts: int = Field(default=5, ge=1)
    gemini_retry_budget_s: float = Field(default=180.0, gt=0)
    reference_max_side: int = Field(default=1024, ge=64)
    # Bulk generation: items per job, items a generate worker runs side by side per task,
    # how often the fleet asks Gemini about its batches, and the request size up to which a
    # batch is sent inline (Gemini's limit is 20 MB; above it, a JSON Lines file).
    max_generate_items: int = Field(default=1000, gt=0)
    generate_batch_size: int = Field(default=8, ge=1, le=256)
    gemini_batch_poll_s: float = Field(default=30.0, gt=0)
    gemini_batch_inline_bytes: int = Field(default=19 * 1024 * 1024, gt=0)

    # Webhooks: the Standard Webhooks secret (whsec_<base64>, or any other text used as its
    # bytes), hosts exempt from the public-address check, and how long a delivery is retried.
    webhook_secret: str | None = None
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_s: float = Field(default=3600.0, ge=0)

    api_url: str = "http://127.0.0.1:8000"
    # text: human lines; json: one JSON object per line, with job and batch ids.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where a worker serves /metrics (Prometheus); 0: none. One port per worker process:
    # `assetrag up` gives each worker its own, compose gives each container the same one.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can reach it
    # The queues /readyz needs a live worker on (shared.tasks.QUEUES). A cluster that scales a
    # worker kind to zero (deploy/kubernetes: embed) leaves it out, or the API would go unready
    # with no worker and never take the work that scales one up.
    ready_queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [*QUEUE_NAMES])
    # One log line per request costs ~7 % of the API's submit rate; /metrics counts requests.
    access_log: bool = False
    # Per API key (with keys on), shared by every API process: requests per second after a
    # burst. 0 turns the limit off.
    rate_limit_per_s: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=64_000_000, gt=0)
    max_items_per_job: int = Field(default=100_000, gt=0)
    max_query_chars: int = Field(default=2_000, gt=0)
    max_prompt_chars: int = Field(default=8_000, gt=0)
    url_timeout_s: float = Field(default=20.0, gt=0)
    # Tests serve URL items from loopback; production must never fetch private addresses.
    allow_private_urls: bool = False

    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    # How long a failing embed batch is tried again (with backoff) before its items fail.
    batch_retry_s: float = Field(default=120.0, ge=0)
    decode_threads: int = Field(default=4, ge=1)
    # Duplicates jobs: assets per batch (one range search each), and how many neighbours
    # each asset brings back at most (clusters grow past it through their members).
    duplicates_batch_size: int = Field(default=256, ge=1, le=4096)
    duplicates_neighbours: int = Field(default=32, ge=1, le=1024)
    job_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    upload_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    blob_sweep_s: float = Field(default=60.0, gt=0)  # how often expired blobs are deleted
    # The last resort only: the watchdog gives back what a dead worker held within a minute.
    visibility_timeout_s: int = Field(default=3600, gt=0)
    # The watchdog (on default-queue workers): how often it looks, after how long without a
    # sign of life a job's outstanding work is checked, how long started work may run, and
    # how often lost work is sent again before its items fail.
    watchdog_period_s: float = Field(default=10.0, gt=0)
    work_quiet_s: float = Field(default=30.0, gt=0)
    task_timeout_s: float = Field(default=900.0, gt=0)
    work_attempts: int = Field(default=3, ge=1)
    max_wait_s: float = 30.0

    @model_validator(mode="after")
    def _precision_fits_backend(self) -> Settings:
        if self.backend == "torch" and self.precision == "int8":
            raise ValueError("ASSETRAG_PRECISION=int8 needs ASSETRAG_BACKEND=onnx")
        if self.backend == "onnx" and self.precision in ("fp16", "bf16"):
            raise ValueError("ASSETRAG_BACKEND=onnx runs at ASSETRAG_PRECISION fp32 or int8")
        if self.backend == "onnx" and self.device == "cuda":
            raise ValueError("ASSETRAG_BACKEND=onnx runs on the CPU; use torch with cuda")
        return self

    @field_validator(
        "library_roots",
        "api_keys",
        "clip_models",
        "webhook_allow_hosts",
        "mcp_allowed_hosts",
        "mcp_allowed_origins",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("clip_model")
    @classmethod
    def _model_name_parses(cls, name: str) -> str:
        open_clip_parts(name)  # open_clip:<arch>/<tag>, or refused at start-up
        return name

    @field_validator("ready_queues", mode="before")
    @classmethod
    def _ready_queues_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ready_queues")
    @classmethod
    def _ready_queues_known(cls, queues: list[str]) -> list[str]:
        # A misspelt queue would keep /readyz at 503 for ever: refused at start-up instead.
        unknown = set(queues) - set(QUEUE_NAMES)
        if unknown:
            raise ValueError(f"ASSETRAG_READY_QUEUES names unknown queues: {sorted(unknown)}")
        return queues

    @field_validator("api_keys")
    @classmethod
    def _keys_name_tenants(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            key, _, tenant = entry.partition(":")
            if not key or not TENANT_RE.fullmatch(tenant):
                raise ValueError(
                    "ASSETRAG_API_KEYS entries are key:tenant, the tenant 1-32 letters and digits"
                )
        return entries

    @field_validator("blob_uri")
    @classmethod
    def _blob_uri(cls, uri: str | None) -> str | None:
        if uri is not None and "://" in uri and not uri.startswith(("s3://", "file://")):
            raise ValueError("ASSETRAG_BLOB_URI is a directory, file://DIR or s3://bucket/prefix")
        if uri is not None and uri.startswith("s3://") and not uri[5:].split("/", 1)[0]:
            raise ValueError("ASSETRAG_BLOB_URI=s3://... needs a bucket: s3://bucket/prefix")
        return uri

    @field_validator("library_roots")
    @classmethod
    def _resolve_roots(cls, roots: list[Path]) -> list[Path]:
        return [root.expanduser().resolve() for root in roots]

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus")

    @property
    def resolved_blob_uri(self) -> str:
        return self.blob_uri or str(self.data_dir / "blobs")

    @property
    def allowed_models(self) -> list[str]:
        """What a collection may be re-indexed to."""
        offered = [m.name for m in OFFERED]
        named = [self.clip_model, *self.clip_models, *offered, *KNOWN_DIMENSIONS]
        return list(dict.fromkeys(named))

    @property
    def tenants_by_key(self) -> dict[str, str]:
        pairs = (entry.split(":", 1) for entry in self.api_keys)
        return {key: tenant for key, tenant in pairs}


@lru_cache
def get_settings() -> Settings:
    return Settings()
