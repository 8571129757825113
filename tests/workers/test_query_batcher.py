"""Micro-batching and the text cache, against the real (tiny) CLIP text tower: the vectors a
batch gives each caller are the ones it would have got alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.clip.encoder import ClipEncoder
from shared.contract import FilterValue
from shared.milvus.errors import CollectionNotFound
from shared.milvus.records import AssetRecord, VectorHit
from shared.settings import Settings
from tests.support.clip_checkpoint import build_tiny_checkpoint
from workers.context import WorkerContext, build_context
from workers.query_batcher import QueryBatcher, QueryBatchers, TextCache, VectorSearches

Filter = dict[str, FilterValue] | None
TEXTS = [f"query number {i} " + "word " * (i % 7) for i in range(16)]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    path = build_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")
    enc = ClipEncoder(str(path), "cpu", "fp32")
    enc.load()
    return enc


class Counting:
    """The encoder's `encode_texts`, recording each call's texts."""

    def __init__(self, encoder: ClipEncoder) -> None:
        self.encoder = encoder
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.encoder.encode_texts(texts)


def test_queries_arriving_together_are_encoded_together(encoder: ClipEncoder) -> None:
    encode = Counting(encoder)
    batcher = QueryBatcher(encode, window_s=0.05, max_batch=64, cache_size=0)
    barrier = threading.Barrier(len(TEXTS))

    def ask(text: str) -> np.ndarray:
        barrier.wait()
        return batcher.encode([text])

    with ThreadPoolExecutor(len(TEXTS)) as pool:
        got = list(pool.map(ask, TEXTS))
    assert len(encode.calls) < len(TEXTS) // 2  # batched, not one call per query
    assert sorted(t for call in encode.calls for t in call) == sorted(TEXTS)
    for text, vectors in zip(TEXTS, got, strict=True):
        assert vectors.shape == (1, 48)
        np.testing.assert_allclose(vectors[0], encoder.encode_texts([text])[0], atol=2e-6)


def test_a_lone_query_waits_only_the_window(encoder: ClipEncoder) -> None:
    encode = Counting(encoder)
    batcher = QueryBatcher(encode, window_s=0.0, max_batch=8, cache_size=0)
    np.testing.assert_allclose(batcher.encode(["a cat"]), encoder.encode_texts(["a cat"]))
    assert encode.calls == [["a cat"]]


def test_a_lone_query_does_not_wait_for_company(encoder: ClipEncoder) -> None:
    batcher = QueryBatcher(Counting(encoder), window_s=2.0, max_batch=8, cache_size=0)
    for text in ("a cat", "a dog"):  # one at a time, as one client searching sends them
        started = time.monotonic()
        batcher.encode([text])
        assert time.monotonic() - started < 1.0  # not the 2 s window


def test_batches_are_capped_and_order_is_kept(encoder: ClipEncoder) -> None:
    encode = Counting(encoder)
    batcher = QueryBatcher(encode, window_s=0.0, max_batch=5, cache_size=0)
    got = batcher.encode(TEXTS + TEXTS[:3])  # repeats are encoded once
    assert [len(call) for call in encode.calls] == [5, 5, 5, 1]
    assert batcher.stats.largest == 5 and batcher.stats.texts == len(TEXTS)
    np.testing.assert_allclose(got, encoder.encode_texts(TEXTS + TEXTS[:3]), atol=2e-6)


def test_cached_texts_are_not_encoded_again(encoder: ClipEncoder) -> None:
    encode = Counting(encoder)
    batcher = QueryBatcher(encode, window_s=0.0, max_batch=8, cache_size=2)
    first = batcher.encode(["a", "b"])
    again = batcher.encode(["b", "a"])
    assert encode.calls == [["a", "b"]] and batcher.stats.cache_hits == 2
    np.testing.assert_array_equal(again, first[::-1])
    batcher.encode(["c"])  # pushes out "b", the least recently used
    batcher.encode(["a", "b", "c"])
    assert encode.calls[-1] == ["b"]
    assert batcher.encode([]).shape == (0, 48)


def test_cached_vectors_cannot_be_changed_by_a_caller() -> None:
    cache = TextCache(4)
    vector = np.ones(3, dtype=np.float32)
    cache.put("x", vector)
    vector[0] = 5  # the caller's copy is its own
    stored = cache.get("x")
    assert stored is not None and stored[0] == 1
    with pytest.raises(ValueError):
        stored[0] = 2


def test_every_waiting_caller_gets_the_encoders_error() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model gone")

    batcher = QueryBatcher(broken, window_s=0.02, max_batch=8, cache_size=8)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.encode, [text]) for text in ("a", "b", "c")]
    for future in futures:
        with pytest.raises(RuntimeError, match="model gone"):
            future.result()
    assert len(batcher.cache) == 0


def test_one_batcher_per_model(encoder: ClipEncoder, tmp_path: Path) -> None:
    other = ClipEncoder(str(build_tiny_checkpoint(tmp_path / "d32.pt", embed_dim=32)), "cpu")
    models = {"tiny": encoder, "d32": other}
    batchers = QueryBatchers(lambda m, texts: models[m].encode_texts(texts), 0.0, 8, 16)
    assert batchers.get("tiny") is batchers.get("tiny")
    assert batchers.get("tiny").encode(["x"]).shape == (1, 48)
    assert batchers.get("d32").encode(["x"]).shape == (1, 32)  # caches kept apart


# --- vector searches made together -------------------------------------------------------------


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings)
    yield context
    context.vectors.close()


def unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(ctx: WorkerContext, tenant: str, seed: int) -> np.ndarray:
    scope = ctx.scoped(tenant)
    scope.ensure_collection("c", 8, "m")
    vectors = unit(np.random.default_rng(seed), 40)
    records = [
        AssetRecord(asset_id=f"{tenant}{i:059x}", vector=v.tolist(), metadata={"odd": i % 2})
        for i, v in enumerate(vectors)
    ]
    scope.upsert("c", records)
    return vectors


def test_searches_from_many_jobs_are_one_call_and_each_gets_its_own_hits(
    ctx: WorkerContext,
) -> None:
    stored = {tenant: fill(ctx, tenant, seed) for seed, tenant in enumerate(("alpha", "beta"))}
    searches = VectorSearches(window_s=0.05, max_batch=64)
    asks = [  # (tenant, query rows, top_k, filter): mixed tenants, depths and filters
        (tenant, stored[tenant][i : i + rows], top_k, flt)
        for i, (tenant, rows, top_k, flt) in enumerate(
            [("alpha", 1, 5, None), ("beta", 2, 5, None), ("alpha", 1, 3, None)] * 3
            + [("alpha", 1, 5, {"odd": 1}), ("beta", 3, 5, None), ("alpha", 2, 5, None)]
        )
    ]
    barrier = threading.Barrier(len(asks))

    def ask(tenant: str, rows: np.ndarray, top_k: int, flt: Filter) -> list[list[VectorHit]]:
        barrier.wait()
        return searches.bound(ctx.scoped(tenant)).search("c", rows, top_k, flt)

    with ThreadPoolExecutor(len(asks)) as pool:
        got = list(pool.map(lambda a: ask(*a), asks))
    assert searches.stats.calls < len(asks)  # made together
    for (tenant, rows, top_k, flt), hits in zip(asks, got, strict=True):
        alone = ctx.scoped(tenant).search("c", rows, top_k, flt)
        assert [[h.asset_id for h in q] for q in hits] == [[h.asset_id for h in q] for q in alone]
        assert all(h.asset_id.startswith(tenant) for q in hits for h in q)  # never another's
        assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)  # a stored vector finds itself


def test_a_missing_collection_fails_only_its_own_search(ctx: WorkerContext) -> None:
    fill(ctx, "alpha", 0)
    searches = VectorSearches(window_s=0.05, max_batch=64)
    query = unit(np.random.default_rng(9), 1)
    with ThreadPoolExecutor(2) as pool:
        missing = pool.submit(searches.bound(ctx.scoped("beta")).search, "c", query, 3)
        found = pool.submit(searches.bound(ctx.scoped("alpha")).search, "c", query, 3)
    with pytest.raises(CollectionNotFound):
        missing.result()
    assert len(found.result()[0]) == 3
    with pytest.raises(CollectionNotFound):  # a name nobody could make: refused at once
        searches.bound(ctx.scoped("alpha")).search("../x", query, 3)


def test_the_default_cap_makes_full_batches_that_need_no_padding(encoder: ClipEncoder) -> None:
    """Text batches are padded to a power of two (clip_encoder), so a cap that is not one
    makes full batches pay for rows they do not use; 16 threads' texts come as 8 and 8."""
    settings = Settings()
    cap = settings.query_batch_max
    assert cap & (cap - 1) == 0, "the cap must be a power of two"
    counting = Counting(encoder)
    gate = threading.Event()

    def slow_first(texts: list[str]) -> np.ndarray:
        gate.wait(5)  # the first call holds, so the other 15 queue up behind it
        return counting(texts)

    batcher = QueryBatcher(slow_first, settings.query_batch_window_ms / 1000, cap, 0)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(batcher.encode, [text]) for text in TEXTS]
        time.sleep(0.3)
        gate.set()
        for future in futures:
            future.result()
    sizes = sorted(len(call) for call in counting.calls)
    assert max(sizes) <= cap and sum(sizes) == len(TEXTS)
    assert sizes.count(cap) >= 1
