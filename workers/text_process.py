"""A query worker's text encoder, in a child process of its own.

Why: a query worker is many Python threads (Celery's, one per running search, Redis replies
and job records), and they share one GIL. The text pass itself runs outside the GIL (one
TorchScript call, shared/clip/text_tower.py), but the Python around every pass (tokenising,
the hand-off to the torch thread, finishing the vectors, answering the waiting searches)
queues for the GIL behind those threads: under 20 clients on two cores a batch of 8 texts
took 407 ms in the worker against 219 ms for the bare encoder (docs/speed.md). In a process
of its own the encoder has a GIL to itself; the worker sends texts down a pipe and reads
vectors back, and its batching thread waits in a system call that holds no lock.

The child loads models with the worker's settings (up to ASSETRAG_MAX_MODELS, least recently
used out) and runs the very `encode_texts` the worker would, so its vectors are the
in-process ones to the bit (tested). It exits when the worker does (its end of the pipe
closes). One that dies is started again for the next call, which is tried once more.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.logs import configure_logging

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    from shared.clip.families import Encoder
    from shared.settings import Settings

log = logging.getLogger("assetrag.worker")

# spawn, not fork: the worker has threads and may hold torch's OpenMP pool by now.
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class LoadedModel:
    """What the child loaded, for the worker's start-up log and its tests."""

    model_id: str
    dim: int
    device: str
    precision: str
    text_tower: str
    torch_threads: int
    seconds: float


# One message for a child found dead mid-call or between calls: operators grep for it.
DIED = "the text encoder process died (exit code %s); starting another"


class TextProcessDied(RuntimeError):
    """The child died twice in a row on one call (its exit code says how)."""


class TextProcess:
    """Texts -> vectors through a child process; thread-safe (calls take turns, as the
    child serves one at a time). Started on first use, or by `start()`."""

    def __init__(self, settings: Settings, torch_threads: int = 0) -> None:
        self._settings = settings
        self._torch_threads = torch_threads
        self._lock = threading.Lock()
        self._proc: SpawnProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, model: str | None = None) -> None:
        """Starts the child now (and has it load `model` before anything else, so a load
        here overlaps the worker's own)."""
        with self._lock:
            self._ensure(model)

    def load(self, model: str) -> LoadedModel:
        loaded: LoadedModel = self._call(("load", model))
        return loaded

    def encode_texts(self, model: str, texts: list[str]) -> np.ndarray:
        """The same as `encoder_for(model).encode_texts(texts)` in this process."""
        vectors: np.ndarray = self._call(("encode", model, texts))
        return vectors

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the child sees the pipe close and exits
            if self._proc is not None:
                self._proc.join(timeout=10)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join()
            self._proc, self._conn = None, None

    def _ensure(self, model: str | None = None) -> Connection:
        if self._proc is not None and not self._proc.is_alive():
            # killed between calls (the OOM killer, an operator): say so, as a death mid-call does
            log.warning(DIED, self._reap())
        if self._proc is None or self._conn is None:
            here, there = _SPAWN.Pipe()
            proc = _SPAWN.Process(
                target=serve,
                args=(there, self._settings, self._torch_threads, model),
                name="assetrag-text-encoder",
                daemon=True,  # ended with the worker's interpreter, whatever else happens
            )
            proc.start()
            there.close()
            self._proc, self._conn = proc, here
            log.info("text encoder process %s started", proc.pid)
        return self._conn

    def _call(self, request: tuple[Any, ...]) -> Any:
        with self._lock:
            for attempt in (1, 2):
                conn = self._ensure()
                try:
                    conn.send(request)
                    status, payload = conn.recv()
                except (EOFError, OSError) as exc:
                    exit_code = self._reap()
                    if attempt == 2:
                        raise TextProcessDied(
                            f"the text encoder process died twice (exit code {exit_code})"
                        ) from exc
                    log.warning(DIED, exit_code)
                    continue
                if status == "error":
                    raise payload
                return payload
        raise AssertionError("unreachable")

    def _reap(self) -> int | None:
        assert self._proc is not None
        self._proc.join(timeout=10)
        exit_code = self._proc.exitcode
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None
        return exit_code


# --- the child ---------------------------------------------------------------------------------


def serve(conn: Connection, settings: Settings, torch_threads: int, model: str | None) -> None:
    """The child's life: load `model` first, then answer requests until the pipe closes."""
    configure_logging(settings.log_format, settings.log_level)
    if torch_threads:
        import torch

        from shared.clip.torch_thread import TORCH_THREAD

        TORCH_THREAD.run(torch.set_num_threads, torch_threads)
    models = _Models(settings)
    if model is not None:
        _answer(partial(models.get, model), quiet=False)  # a failure is also the first call's
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the worker is gone or going
        try:
            conn.send(_answer(partial(models.handle, request)))
        except (OSError, KeyboardInterrupt):
            return


class _Models:
    """The child's encoders (the worker's cache, with its size) and how long each load took."""

    def __init__(self, settings: Settings) -> None:
        from workers.encoders import EncoderCache

        self._settings = settings
        self._seconds: dict[str, float] = {}
        self._cache = EncoderCache(settings.max_models, self._load)

    def get(self, model: str) -> Encoder:
        return self._cache.get(model)

    def handle(self, request: tuple[Any, ...]) -> np.ndarray | LoadedModel:
        kind, model, *rest = request
        encoder = self.get(model)
        if kind == "encode":
            return encoder.encode_texts(rest[0])
        return LoadedModel(
            model_id=encoder.model_id,
            dim=encoder.dim,
            device=encoder.device,
            precision=encoder.precision,
            text_tower=encoder.text_tower,
            torch_threads=encoder.torch_threads,
            seconds=self._seconds.get(model, 0.0),
        )

    def _load(self, model: str) -> Encoder:
        from shared.clip.families import encoder_for

        started = time.perf_counter()
        encoder = encoder_for(model, self._settings)
        encoder.load()
        self._seconds[model] = time.perf_counter() - started
        return encoder


def _answer(work: Callable[[], Any], quiet: bool = True) -> tuple[str, Any]:
    """("ok", result), or ("error", the exception) as the worker can unpickle it."""
    try:
        return "ok", work()
    except Exception as exc:
        if not quiet:
            log.warning("text encoder process %s: %s", os.getpid(), exc)
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return "error", exc
