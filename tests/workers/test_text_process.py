"""A query worker's text encoder in a child process (workers/text_process.py): the same vectors
to the bit, its errors reach the caller, a dead child is replaced, and it never outlives the
worker."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.clip.encoder import ClipEncoder
from shared.clip.torch_thread import TORCH_THREAD
from shared.settings import Settings
from tests.support.processes import alive
from tests.support.waiting import wait_for
from workers import celery_app
from workers.celery_app import text_process_for
from workers.context import build_context
from workers.text_process import TextProcess

TEXTS = ["a red dress", "two dogs on a beach at dusk", "a", " ".join(["silk shawl"] * 60)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def module_settings(
    tiny_clip: Path, other_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("text-process"),
        clip_model=str(tiny_clip),
        clip_models=[str(other_clip)],
        device="cpu",
        precision="fp32",
    )


@pytest.fixture(scope="module")
def threads() -> int:
    """The child runs torch on as many threads as this process's torch thread, so the two
    passes are the same computation."""
    return TORCH_THREAD.run(torch.get_num_threads)


@pytest.fixture(scope="module")
def process(module_settings: Settings, threads: int) -> Iterator[TextProcess]:
    process = TextProcess(module_settings, threads)
    process.start(module_settings.clip_model)
    yield process
    process.close()


def in_process(model: str, settings: Settings, texts: list[str]) -> np.ndarray:
    return ClipEncoder.from_settings(model, settings).encode_texts(texts)


def test_the_childs_vectors_are_the_in_process_ones_to_the_bit(
    process: TextProcess, module_settings: Settings, tiny_clip: Path, other_clip: Path
) -> None:
    for model in (str(tiny_clip), str(other_clip)):  # a second model, of another dimension
        got = process.encode_texts(model, TEXTS)
        assert got.dtype == np.float32
        assert np.array_equal(got, in_process(model, module_settings, TEXTS))
    assert process.encode_texts(str(tiny_clip), []).shape == (0, 48)


def test_it_says_what_it_loaded(process: TextProcess, tiny_clip: Path, threads: int) -> None:
    loaded = process.load(str(tiny_clip))
    assert (loaded.model_id, loaded.dim, loaded.device) == (str(tiny_clip), 48, "cpu")
    assert (loaded.precision, loaded.text_tower, loaded.torch_threads) == (
        "fp32",
        "traced",
        threads,
    )
    assert loaded.seconds > 0
    assert process.pid != os.getpid()


def test_the_childs_error_reaches_the_caller_and_it_keeps_serving(
    process: TextProcess, tiny_clip: Path, tmp_path: Path
) -> None:
    pid = process.pid
    with pytest.raises(ValueError, match="neither a known model name"):
        process.encode_texts(str(tmp_path / "missing.pt"), TEXTS)
    assert process.encode_texts(str(tiny_clip), TEXTS).shape == (len(TEXTS), 48)
    assert process.pid == pid


@pytest.mark.parametrize("between_calls", [False, True], ids=["racing-the-call", "between-calls"])
def test_a_killed_child_is_replaced_and_the_call_still_answers(
    process: TextProcess,
    module_settings: Settings,
    tiny_clip: Path,
    caplog: pytest.LogCaptureFixture,
    between_calls: bool,
) -> None:
    before = process.pid
    assert before is not None
    os.kill(before, signal.SIGKILL)
    if between_calls:  # found dead before the call is sent, not by a broken pipe
        wait_for(lambda: not alive(before), 10, "the killed child to be gone")
    with caplog.at_level(logging.WARNING, "assetrag.worker"):
        got = process.encode_texts(str(tiny_clip), TEXTS)
    assert np.array_equal(got, in_process(str(tiny_clip), module_settings, TEXTS))
    assert process.pid not in (None, before)
    assert "the text encoder process died (exit code -9)" in caplog.text


def test_query_batchers_send_texts_to_the_child(
    process: TextProcess, settings: Settings, module_settings: Settings
) -> None:
    ctx = build_context(settings)
    ctx.encode_texts_in(process)
    vectors = ctx.texts().encode(TEXTS[:2])
    assert np.array_equal(vectors, in_process(settings.clip_model, module_settings, TEXTS[:2]))
    assert ctx._encoders is None  # no model was loaded in this process for the texts


def test_the_child_ends_with_a_worker_killed_outright(tiny_clip: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from shared.settings import Settings
        from workers.text_process import TextProcess
        settings = Settings(_env_file=None, data_dir={str(tmp_path)!r}, device="cpu",
                            clip_model={str(tiny_clip)!r})
        process = TextProcess(settings, 1)
        process.encode_texts(settings.clip_model, ["a red dress"])
        print(process.pid, flush=True)
        os._exit(0)  # as SIGKILL would: no atexit, no close
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    child = int(out.stdout.split()[-1])
    wait_for(lambda: not alive(child), 30, "the child to see its pipe close and exit")


def test_only_a_worker_serving_queries_but_not_embeds_gets_a_child(
    module_settings: Settings,
) -> None:
    assert text_process_for(module_settings, ["query"]) is None  # off by default
    on = module_settings.model_copy(update={"query_text_process": True})
    assert text_process_for(on, ["embed", "query"]) is None
    assert text_process_for(on, ["embed"]) is None
    assert text_process_for(on, ["default"]) is None
    process = text_process_for(on, ["query"])
    assert process is not None
    try:
        assert process.load(module_settings.clip_model).torch_threads == 1  # the query setting
        assert process in celery_app._text_processes  # closed at the worker's shutdown
    finally:
        celery_app._text_processes.remove(process)
        process.close()
    assert process.pid is None
