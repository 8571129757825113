"""One thread for all of a process's torch work (`ClipEncoder` runs every model call here).

Why: torch runs its CPU kernels on OpenMP, and GNU OpenMP gives every thread that opens a
parallel region a team of worker threads of its own. Once a process holds more OpenMP
threads than it has cores, libgomp stops its workers spinning between regions and puts them
to sleep instead, so each of the hundreds of small regions in one CLIP pass pays a wake-up.
Measured on a 2-core Zen 4 (bf16, one short text): 7.7 ms a query while a single thread
runs torch, 14.6 ms once a second thread has run torch as well. Celery's thread pool, the
query batchers' threads and the embed worker's decode pool would each make a team; routing
the encoder through one thread keeps a single team, and the preprocessing those threads do
is torch-free (`shared/clip/encoder.py`).

Process-wide by nature (OpenMP's threads are the process's), hence one instance per
process, rebuilt in a forked child.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class TorchThread:
    """Runs callables on one long-lived thread, in order; a call made from that thread runs
    at once (so torch work may nest without waiting on itself)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self._pool().submit(fn, *args, **kwargs).result()

    @property
    def ident(self) -> int | None:
        """The thread's id once it has run something (tests check where work ran)."""
        return self._ident

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    1, thread_name_prefix="assetrag-torch", initializer=self._mark
                )
            return self._executor

    def _mark(self) -> None:
        self._ident = threading.get_ident()

    def _forget(self) -> None:
        # a forked child inherits the executor but not its thread
        self._executor, self._ident, self._lock = None, None, threading.Lock()


TORCH_THREAD = TorchThread()
os.register_at_fork(after_in_child=TORCH_THREAD._forget)
