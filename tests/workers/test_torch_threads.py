"""How many threads a worker's torch work gets (ASSETRAG_QUERY_TORCH_THREADS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from shared.clip.torch_thread import TORCH_THREAD
from shared.settings import Settings
from workers.celery_app import limit_torch_threads


@pytest.fixture
def restored() -> Iterator[None]:
    before = TORCH_THREAD.run(torch.get_num_threads)
    yield
    TORCH_THREAD.run(torch.set_num_threads, before)


@pytest.mark.usefixtures("restored")
def test_a_query_worker_runs_torch_on_the_threads_set() -> None:
    assert limit_torch_threads(Settings(query_torch_threads=1), ["query"]) == 1
    assert TORCH_THREAD.run(torch.get_num_threads) == 1


@pytest.mark.usefixtures("restored")
@pytest.mark.parametrize(
    ("threads", "queues"), [(1, ["embed", "query"]), (1, ["embed"]), (0, ["query"])]
)
def test_embed_workers_and_zero_keep_torchs_default(threads: int, queues: list[str]) -> None:
    before = TORCH_THREAD.run(torch.get_num_threads)
    assert limit_torch_threads(Settings(query_torch_threads=threads), queues) is None
    assert TORCH_THREAD.run(torch.get_num_threads) == before
