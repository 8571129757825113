"""The CLIP models a worker holds: a small cache keyed by model id, least recently used out.

A collection's vectors only mean something next to its own model's, so every job encodes
with the model of the collection it touches; while a re-index builds a collection's next
version with another model, both are served side by side. The cache (as Immich's model
cache does) keeps up to ASSETRAG_MAX_MODELS loaded; a model pushed out is loaded again
when next asked for.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.clip.families import Encoder

log = logging.getLogger("assetrag.worker")


class EncoderCache:
    def __init__(self, size: int, load: Callable[[str], Encoder]) -> None:
        self.size = size
        self._load = load
        self._loaded: OrderedDict[str, Encoder] = OrderedDict()
        self._lock = threading.Lock()
        # One lock a model: threads asking for the same model wait for one load; a load of
        # another model does not hold them up.
        self._loading: dict[str, threading.Lock] = {}

    def get(self, model: str) -> Encoder:
        with self._lock:
            if (encoder := self._loaded.get(model)) is not None:
                self._loaded.move_to_end(model)
                return encoder
            loading = self._loading.setdefault(model, threading.Lock())
        with loading:
            with self._lock:
                if (encoder := self._loaded.get(model)) is not None:
                    return encoder
            encoder = self._load(model)
            with self._lock:
                self._loaded[model] = encoder
                dropped = self._evict()
        if dropped:
            _release(dropped)
        return encoder

    def _evict(self) -> list[str]:
        dropped = []
        while len(self._loaded) > self.size:
            model, _ = self._loaded.popitem(last=False)
            dropped.append(model)
        return dropped

    def loaded(self) -> list[str]:
        """Model ids, least recently used first."""
        with self._lock:
            return list(self._loaded)


def _release(models: list[str]) -> None:
    # A job still holding a dropped encoder keeps it alive until it is done; the memory
    # comes back after that.
    log.info("unloaded %s (ASSETRAG_MAX_MODELS)", ", ".join(models))
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
