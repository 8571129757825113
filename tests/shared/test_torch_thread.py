"""The one thread a process's torch work runs on (see shared/clip/torch_thread.py for why)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.clip.torch_thread import TorchThread


def test_calls_from_many_threads_run_on_one() -> None:
    runner = TorchThread()
    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(lambda _: runner.run(threading.get_ident), range(64)))
    assert seen == {runner.ident}
    assert runner.ident != threading.get_ident()


def test_a_call_from_the_thread_itself_runs_at_once() -> None:
    runner = TorchThread()

    def outer() -> tuple[int, int]:
        # would wait on itself for ever if it were queued behind the running call
        return threading.get_ident(), runner.run(threading.get_ident)

    first, nested = runner.run(outer)
    assert first == nested == runner.ident


def test_arguments_results_and_errors_pass_through() -> None:
    runner = TorchThread()
    assert runner.run(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        runner.run(lambda: 1 / 0)
    assert runner.run(lambda: "still serving") == "still serving"


def test_a_forked_child_starts_a_thread_of_its_own() -> None:
    runner = TorchThread()
    runner.run(lambda: None)
    runner._forget()  # what os.register_at_fork runs in the child
    assert runner.ident is None
    assert runner.run(threading.get_ident) == runner.ident is not None
