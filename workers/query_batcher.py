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

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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


@dataclass
class _Request:
    texts: list[str]
    future: Future[np.ndarray] = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the batcher did, for tests and benchmarks."""

    calls: int = 0  # encode calls made
    texts: int = 0  # texts encoded (after the cache and de-duplication)
    largest: int = 0  # the most texts in one call
    cache_hits: int = 0


class QueryBatcher:
    def __init__(self, encode: Encode, window_s: float, max_batch: int, cache_size: int) -> None:
        self._encode = encode
        self.window_s = window_s
        self.max_batch = max_batch
        self.cache = TextCache(cache_size)
        self.stats = BatchStats()
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit vectors, in order; raises what the encoder raised."""
        if not texts:
            return self._encode([])  # the right (0, dim) shape, without a round trip
        found = {text: v for text in texts if (v := self.cache.get(text)) is not None}
        self.stats.cache_hits += len(found)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            request = _Request(missing)
            self._start()
            self._queue.put(request)
            found.update(zip(missing, request.future.result(), strict=True))
        return np.stack([found[text] for text in texts])

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="assetrag-query-batcher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._serve(self._gather())

    def _gather(self) -> list[_Request]:
        """The first waiting request, then whatever else arrives within the window (and is
        queued already when it closes), up to the cap."""
        batch = [self._queue.get()]
        size = len(batch[0].texts)
        deadline = time.monotonic() + self.window_s
        while size < self.max_batch:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    def _serve(self, batch: list[_Request]) -> None:
        texts = list(dict.fromkeys(text for request in batch for text in request.texts))
        try:
            vectors = self._encode_capped(texts)
        except Exception as exc:  # every waiting caller gets the encoder's error
            for request in batch:
                request.future.set_exception(exc)
            return
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
    """One batcher per model, made on first use; `encode_with(model, texts)` does the work."""

    def __init__(
        self, encode_with: EncodeWith, window_s: float, max_batch: int, cache_size: int
    ) -> None:
        self._encode_with = encode_with
        self._options = (window_s, max_batch, cache_size)
        self._batchers: dict[str, QueryBatcher] = {}
        self._lock = threading.Lock()

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
