"""Text queries, encoded together: a per-model LRU cache and micro-batching.

A query worker runs many threads (ASSETRAG_QUERY_CONCURRENCY), each serving one search job.
Encoding one short text at a time leaves most of a CPU pass unused, so each model gets one
`QueryBatcher`: a thread asks for its texts' vectors; texts already seen come from the cache;
the rest wait in a queue, and one encoding thread takes what arrived within a few
milliseconds (ASSETRAG_QUERY_BATCH_WINDOW_MS, at most ASSETRAG_QUERY_BATCH_MAX texts) and
encodes it in one call. While that call runs, new queries queue up and form the next batch,
so under load batches grow by themselves, and one lone query waits only the window.

The batcher does not hold the encoder: it asks for it on every batch, so a model dropped
from the worker's encoder cache is loaded again rather than kept alive here.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from shared.metrics import QUERY_BATCH_ROWS, SEARCH_STAGE

if TYPE_CHECKING:
    from shared.contract import FilterValue
    from shared.milvus.records import VectorHit
    from shared.milvus.tenants import TenantVectors
    from shared.settings import Settings

Encode = Callable[[list[str]], np.ndarray]
EncodeWith = Callable[[str, list[str]], np.ndarray]  # (model, texts) -> vectors


class TextCache:
    """Text -> its unit vector, least recently used out; thread-safe. Vectors are read-only,
    since every caller shares them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.size == 0:
            return
        vector = vector.copy()
        vector.flags.writeable = False
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class _Waiting(Protocol):
    future: Future[Any]
    queued_at: float

    @property
    def size(self) -> int: ...


RequestT = TypeVar("RequestT", bound=_Waiting)


class _Gatherer(Generic[RequestT]):
    """Requests from many threads, handed to one serving thread in batches: the first waiting
    request, then whatever else arrives within the window (and is queued already when it
    closes), up to `max_batch` rows. Subclasses serve a batch and settle every future.

    The window is waited only while requests come in company (the last batch held more than
    one): a lone query then pays nothing for it, and under load the batch also takes in
    whatever queued up while the previous one was served."""

    def __init__(self, window_s: float, max_batch: int, name: str, stage: str) -> None:
        self.window_s = window_s
        self._stage = stage  # "encode" or "milvus": the stage its calls count as
        self.max_batch = max_batch
        self._name = name
        self._queue: queue.Queue[RequestT] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._busy = False  # the last batch held more than one request

    def _submit(self, request: RequestT) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(request)

    def _run(self) -> None:
        while True:
            self._serve(self._gather())

    def _timed(self, requests: Sequence[RequestT], started: float) -> None:
        """Metrics of one shared call, observed before its callers are answered: how long
        each request waited for it, how long it took, how many rows it held."""
        served = time.perf_counter() - started
        QUERY_BATCH_ROWS.labels(self._stage).observe(sum(r.size for r in requests))
        for request in requests:
            SEARCH_STAGE.labels(f"{self._stage}_wait").observe(started - request.queued_at)
            SEARCH_STAGE.labels(self._stage).observe(served)

    def _gather(self) -> list[RequestT]:
        batch = [self._queue.get()]
        size = batch[0].size
        deadline = time.monotonic() + (self.window_s if self._busy else 0.0)
        while size < self.max_batch:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(request)
            size += request.size
        self._busy = len(batch) > 1
        return batch

    def _serve(self, batch: list[RequestT]) -> None:
        raise NotImplementedError


@dataclass
class _Request:
    texts: list[str]
    future: Future[np.ndarray] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> int:
        return len(self.texts)


@dataclass
class BatchStats:
    """What the batcher did, for tests and benchmarks."""

    calls: int = 0  # encode (or search) calls made
    texts: int = 0  # texts encoded (after the cache and de-duplication), or vectors searched
    largest: int = 0  # the most rows in one call
    cache_hits: int = 0


class QueryBatcher(_Gatherer[_Request]):
    def __init__(self, encode: Encode, window_s: float, max_batch: int, cache_size: int) -> None:
        super().__init__(window_s, max_batch, "assetrag-query-batcher", "encode")
        self._encode = encode
        self.cache = TextCache(cache_size)
        self.stats = BatchStats()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit vectors, in order; raises what the encoder raised."""
        if not texts:
            return self._encode([])  # the right (0, dim) shape, without a round trip
        found = {text: v for text in texts if (v := self.cache.get(text)) is not None}
        self.stats.cache_hits += len(found)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            request = _Request(missing)
            self._submit(request)
            found.update(zip(missing, request.future.result(), strict=True))
        return np.stack([found[text] for text in texts])

    def _serve(self, batch: list[_Request]) -> None:
        texts = list(dict.fromkeys(text for request in batch for text in request.texts))
        started = time.perf_counter()
        try:
            vectors = self._encode_capped(texts)
        except Exception as exc:  # every waiting caller gets the encoder's error
            self._timed(batch, started)
            for request in batch:
                request.future.set_exception(exc)
            return
        self._timed(batch, started)
        by_text = dict(zip(texts, vectors, strict=True))
        for text, vector in by_text.items():
            self.cache.put(text, vector)
        for request in batch:
            request.future.set_result(np.stack([by_text[text] for text in request.texts]))

    def _encode_capped(self, texts: list[str]) -> list[np.ndarray]:
        """One call per `max_batch` texts (a single job may bring more than the cap)."""
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.max_batch):
            chunk = texts[start : start + self.max_batch]
            out.extend(self._encode(chunk))
            self.stats.calls += 1
            self.stats.texts += len(chunk)
            self.stats.largest = max(self.stats.largest, len(chunk))
        return out


class QueryBatchers:
    """One text batcher per model, made on first use (`encode_with(model, texts)` does the
    work), and one vector search batcher."""

    def __init__(
        self, encode_with: EncodeWith, window_s: float, max_batch: int, cache_size: int
    ) -> None:
        self._encode_with = encode_with
        self._options = (window_s, max_batch, cache_size)
        self._batchers: dict[str, QueryBatcher] = {}
        self._lock = threading.Lock()
        self.searches = VectorSearches(window_s, max_batch)  # one for every collection

    @classmethod
    def from_settings(cls, settings: Settings, encode_with: EncodeWith) -> QueryBatchers:
        return cls(
            encode_with,
            settings.query_batch_window_ms / 1000,
            settings.query_batch_max,
            settings.text_cache_size,
        )

    def get(self, model: str) -> QueryBatcher:
        with self._lock:
            batcher = self._batchers.get(model)
            if batcher is None:
                encode = partial(self._encode_with, model)
                batcher = self._batchers[model] = QueryBatcher(encode, *self._options)
            return batcher


# --- vector searches ---------------------------------------------------------------------------


class Searcher(Protocol):
    """What a search job needs of the vector store (TenantVectors, or one through
    `VectorSearches`)."""

    def search(
        self,
        name: str,
        vectors: np.ndarray,
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        min_score: float | None = None,
        version: int | None = None,
    ) -> list[list[VectorHit]]: ...


Hits = list[list["VectorHit"]]


@dataclass
class _Search:
    scope: TenantVectors
    name: str
    vectors: np.ndarray
    top_k: int
    filter: dict[str, FilterValue] | None
    min_score: float | None
    version: int | None
    future: Future[Hits] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> int:
        return len(self.vectors)

    def key(self) -> tuple[Any, ...]:
        """Searches with the same key can be one call: the same physical collection (the
        tenant is in its name), version, depth, filter and score floor."""
        shape = json.dumps(self.filter, sort_keys=True, default=str)
        physical = self.scope.physical(self.name)
        return (physical, self.version, self.top_k, shape, self.min_score)


class VectorSearches(_Gatherer[_Search]):
    """Vector searches from many jobs' threads, made together: one Milvus call answers many
    queries for about the cost of one (Milvus Lite serves one call at a time), each query's
    hits its own."""

    def __init__(self, window_s: float, max_batch: int) -> None:
        super().__init__(window_s, max_batch, "assetrag-search-batcher", "milvus")
        self.stats = BatchStats()

    def bound(self, scope: TenantVectors) -> Searcher:
        """`scope`'s `search`, made through this batcher."""
        return _BoundSearches(self, scope)

    def search(self, request: _Search) -> Hits:
        request.key()  # an impossible name fails in the caller's thread, as it would alone
        self._submit(request)
        return request.future.result()

    def _serve(self, batch: list[_Search]) -> None:
        groups: dict[tuple[Any, ...], list[_Search]] = {}
        for request in batch:
            groups.setdefault(request.key(), []).append(request)
        for requests in groups.values():
            self._search_together(requests)

    def _search_together(self, requests: list[_Search]) -> None:
        first = requests[0]
        started = time.perf_counter()
        try:
            hits = first.scope.search(
                first.name,
                np.concatenate([r.vectors for r in requests]),
                first.top_k,
                first.filter,
                first.min_score,
                first.version,
            )
        except Exception as exc:  # each job handles the store's error as if alone
            self._timed(requests, started)
            for request in requests:
                request.future.set_exception(exc)
            return
        self._timed(requests, started)
        self.stats.calls += 1
        self.stats.texts += len(hits)
        self.stats.largest = max(self.stats.largest, len(hits))
        start = 0
        for request in requests:
            request.future.set_result(hits[start : start + request.size])
            start += request.size


class _BoundSearches:
    def __init__(self, searches: VectorSearches, scope: TenantVectors) -> None:
        self._searches = searches
        self._scope = scope

    def search(
        self,
        name: str,
        vectors: np.ndarray,
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        min_score: float | None = None,
        version: int | None = None,
    ) -> Hits:
        vectors = np.asarray(vectors, dtype=np.float32)
        request = _Search(self._scope, name, vectors, top_k, filter, min_score, version)
        return self._searches.search(request)
