"""What a worker process holds: clients for Redis, Milvus and the blob store, and the model.

Built once per process on first use, after any fork, so a prefork pool never inherits a
CUDA context or a Milvus connection from its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task

from shared.services import Services
from shared.settings import Settings, get_settings
from shared.vectors import AssetRecord, TenantVectors

if TYPE_CHECKING:
    from shared.clip_encoder import ClipEncoder
    from shared.gemini import GeminiGenerator

T = TypeVar("T")
log = logging.getLogger("assetrag.worker")


@dataclass
class WorkerContext(Services):
    decode_pool: ThreadPoolExecutor
    _encoder: ClipEncoder | None = None
    _generator: GeminiGenerator | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _ready_collections: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def encoder(self) -> ClipEncoder:
        with self._lock:
            if self._encoder is None:
                from shared.clip_encoder import ClipEncoder

                encoder = ClipEncoder(
                    self.settings.clip_model, self.settings.device, self.settings.precision
                )
                encoder.load()
                self.models.record(encoder.model_id, encoder.dim)
                self._encoder = encoder
            return self._encoder

    def scoped(self, tenant: str | None) -> TenantVectors:
        """The vector store as the job's tenant sees it."""
        return TenantVectors(self.vectors, tenant)

    def upsert(self, vectors: TenantVectors, collection: str, records: list[AssetRecord]) -> None:
        """Creates the collection on first use (once per process), then upserts."""
        encoder = self.encoder()
        key = vectors.physical(collection)
        if key not in self._ready_collections:
            vectors.ensure_collection(collection, encoder.dim, encoder.model_id)
            self._ready_collections.add(key)
        try:
            vectors.upsert(collection, records)
        except Exception:
            self._ready_collections.discard(key)  # dropped meanwhile? check again next time
            raise

    @contextlib.contextmanager
    def failing_job(self, job_id: str) -> Iterator[None]:
        """An unexpected error fails the job with its message instead of leaving it running."""
        try:
            yield
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self.jobs.fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the process's one event loop, so calls from many pool threads
        share one Gemini client and its connections."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="assetrag-aio", daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def generator(self) -> GeminiGenerator:
        with self._lock:
            if self._generator is None:
                from shared.gemini import GeminiGenerator, RpmLimiter

                s = self.settings
                self._generator = GeminiGenerator(
                    s.gemini_api_key,
                    s.gemini_model,
                    s.gemini_base_url,
                    s.gemini_timeout_s,
                    s.gemini_max_attempts,
                    s.gemini_retry_budget_s,
                    RpmLimiter(self.redis, s.gemini_rpm, name=s.gemini_model),
                )
            return self._generator


def build_context(settings: Settings) -> WorkerContext:
    return WorkerContext(
        **Services.connect(settings),
        decode_pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode"),
    )


@cache
def worker_context() -> WorkerContext:
    return build_context(get_settings())


class ContextTask(Task):
    """Base task: the process's context is created lazily, once, and shared by all tasks."""

    abstract = True

    @property
    def ctx(self) -> WorkerContext:
        return worker_context()
