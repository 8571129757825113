"""What a worker process holds: clients for Redis, Milvus and the blob store, and the model.

Built once per process on first use, after any fork, so a prefork pool never inherits a
CUDA context or a Milvus connection from its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from shared.milvus.records import AssetRecord
from shared.milvus.tenants import TenantVectors
from shared.services import Services
from shared.settings import Settings, get_settings
from workers.encoders import EncoderCache
from workers.query_batcher import QueryBatcher, QueryBatchers, Searcher

if TYPE_CHECKING:
    from shared.clip.families import Encoder
    from shared.gemini import GeminiBatches, GeminiGenerator
    from workers.text_process import TextProcess

T = TypeVar("T")
log = logging.getLogger("assetrag.worker")


class Target(NamedTuple):
    """A collection's model and the version holding that model's vectors (None: not made)."""

    model: str
    version: int | None


@dataclass
class WorkerContext(Services):
    decode_pool: ThreadPoolExecutor
    # Who runs the work, as the job records it (the Celery hostname in a worker).
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _encoders: EncoderCache | None = None
    _batchers: QueryBatchers | None = None
    _text_process: TextProcess | None = None
    _generator: GeminiGenerator | None = None
    _batches: GeminiBatches | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _ready_collections: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def encoder(self, model: str | None = None) -> Encoder:
        """A loaded encoder for `model` (the service's default model when None)."""
        with self._lock:
            if self._encoders is None:
                self._encoders = EncoderCache(self.settings.max_models, self._load_encoder)
        return self._encoders.get(model or self.settings.clip_model)

    def texts(self, model: str | None = None) -> QueryBatcher:
        """Text queries for `model`: cached, and batched with other threads' (query_batcher)."""
        return self._query_batchers().get(model or self.settings.clip_model)

    def searches(self, scope: TenantVectors) -> Searcher:
        """`scope`'s vector searches, made together with other threads' (query_batcher)."""
        return self._query_batchers().searches.bound(scope)

    def encode_texts_in(self, process: TextProcess) -> None:
        """Text queries from now on go to `process` (a query worker's child) instead of this
        process's encoders; images stay here."""
        with self._lock:
            self._text_process = process
            self._batchers = None

    def _query_batchers(self) -> QueryBatchers:
        with self._lock:
            if self._batchers is None:
                process = self._text_process
                encode_with = (
                    process.encode_texts
                    if process is not None
                    else lambda m, texts: self.encoder(m).encode_texts(texts)
                )
                self._batchers = QueryBatchers.from_settings(self.settings, encode_with)
            return self._batchers

    def _load_encoder(self, model: str) -> Encoder:
        from shared.clip.families import encoder_for

        encoder = encoder_for(model, self.settings)
        encoder.load()
        self.models.record(encoder.model_id, encoder.dim)
        return encoder

    def scoped(self, tenant: str | None) -> TenantVectors:
        """The vector store as the job's tenant sees it."""
        return TenantVectors(self.vectors, tenant)

    def target(self, scope: TenantVectors, collection: str, fresh: bool = False) -> Target:
        """Where a job writes or searches: the version that answers now and its model, or for
        a collection yet to be made, the default model's version 1."""
        if fresh:
            scope.forget(collection)
        info = scope.find_collection(collection)
        if info is None:
            return Target(self.settings.clip_model, None)
        return Target(info.model, info.version)

    def upsert(
        self,
        vectors: TenantVectors,
        collection: str,
        records: list[AssetRecord],
        encoder: Encoder,
        version: int | None = None,
    ) -> None:
        """Creates the collection on first use (once per process), then upserts into the
        version whose model made the vectors."""
        key = vectors.physical(collection)
        if key not in self._ready_collections:
            vectors.ensure_collection(collection, encoder.dim, encoder.model_id)
            self._ready_collections.add(key)
        try:
            vectors.upsert(collection, records, version)
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
                from shared.gemini import GeminiGenerator

                self._generator = GeminiGenerator.from_settings(self.settings, self.redis)
            return self._generator

    def batches(self) -> GeminiBatches:
        """Gemini's Batch API (sync calls: the poller and the batch tasks run in threads)."""
        with self._lock:
            if self._batches is None:
                from shared.gemini import GeminiBatches

                self._batches = GeminiBatches.from_settings(self.settings)
            return self._batches


def build_context(settings: Settings) -> WorkerContext:
    return WorkerContext(
        **Services.connect(settings),
        decode_pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode"),
    )


@cache
def worker_context() -> WorkerContext:
    return build_context(get_settings())
