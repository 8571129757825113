"""The Milvus gateway against real Milvus Lite: in-process (local path) and `milvus-lite server`."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import redis

from shared.errors import Conflict
from shared.milvus.errors import CollectionNotFound, VectorStoreUnavailable
from shared.milvus.filters import build_filter
from shared.milvus.gateway import VectorStore
from shared.milvus.schema import Bookkeeping
from shared.milvus.tenants import TenantVectors
from shared.milvus.write_marks import WriteMarks
from tests.support.vectors import DIM, MODEL, records, unit_vectors

MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MilvusServer:
    """A real `milvus-lite server` subprocess on loopback, restartable on the same data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # --max-workers 1: the engine is not safe for concurrent writes to one collection.
        self.proc = subprocess.Popen(
            [
                str(MILVUS_LITE),
                "server",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--max-workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                store = VectorStore(self.uri)
                store.ping()
                store.close()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("milvus-lite server did not answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    srv = MilvusServer(tmp_path_factory.mktemp("milvus_server"))
    srv.start()
    yield srv
    srv.stop()


def ours(store: VectorStore, *names: str) -> list[str]:
    """The listed collections among these names (a shared server holds other tests' too)."""
    return [c.name for c in store.list_collections() if c.name in names]


@pytest.fixture(params=["local", "server", "milvus"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_client: redis.Redis
) -> Iterator[VectorStore]:
    """Milvus Lite in-process, Milvus Lite's gRPC server, and a real Milvus server."""
    # A fresh local dir per test; the servers are shared, and emptied after each test.
    if request.param == "local":
        uri = str(tmp_path / "nested" / "milvus")
    elif request.param == "server":
        uri = request.getfixturevalue("server").uri
    else:
        uri = request.getfixturevalue("milvus_server").uri
    vs = VectorStore(uri, WriteMarks(redis_client))  # as the service opens it
    before = {info.name for info in vs.list_collections()}
    yield vs
    for info in vs.list_collections():  # the servers are shared: only what this test made
        if info.name not in before:
            vs.drop_collection(info.name)
    vs.close()


def test_create_describe_list_drop(store: VectorStore) -> None:
    info = store.ensure_collection("cats", DIM, MODEL)
    assert (info.name, info.model, info.dimension, info.metric, info.count) == (
        "cats",
        MODEL,
        DIM,
        "COSINE",
        0,
    )
    assert info.created_at > 0
    assert store.ensure_collection("cats", DIM, MODEL) == info  # idempotent
    store.ensure_collection("birds", DIM, MODEL)
    assert ours(store, "birds", "cats") == ["birds", "cats"]
    assert store.get_collection("cats") == info
    store.drop_collection("cats")
    assert ours(store, "birds", "cats") == ["birds"]
    with pytest.raises(CollectionNotFound):
        store.drop_collection("cats")


def test_a_dropped_collection_is_not_answered_from_the_cache(store: VectorStore) -> None:
    store.ensure_collection("cached", DIM, MODEL)
    assert store.get_collection("cached", with_count=False).dimension == DIM
    store.drop_collection("cached")
    with pytest.raises(CollectionNotFound):
        store.get_collection("cached", with_count=False)


def test_reads_load_a_collection_a_restart_left_released(store: VectorStore) -> None:
    store.ensure_collection("released", DIM, MODEL)
    vecs = unit_vectors(np.random.default_rng(3), 4)
    store.upsert("released", records(vecs))
    store._client.release_collection("released")  # what a server restart leaves
    assert store.get_asset("released", "a1") is not None
    store._client.release_collection("released")
    assert store.search("released", vecs[:1], 2)[0][0].asset_id == "a0"
    store._client.release_collection("released")
    assert set(store.get_vectors("released", ["a2"])) == {"a2"}


def test_a_write_is_read_at_once_by_another_process(store: VectorStore) -> None:
    """Read-your-writes across clients: on a Milvus server through the write marks."""
    writer, reader = VectorStore(store.uri, store.marks), VectorStore(store.uri, store.marks)
    writer.ensure_collection("fresh", DIM, MODEL)
    vecs = unit_vectors(np.random.default_rng(11), 6)
    for i in range(3):  # each row read back by the other client right after its write
        writer.upsert("fresh", records(vecs[i : i + 1], prefix=f"r{i}-"))
        assert reader.get_asset("fresh", f"r{i}-0") is not None
        assert reader.search("fresh", vecs[i : i + 1], 1)[0][0].asset_id == f"r{i}-0"
    assert reader.count("fresh") == 3
    writer.close()
    reader.close()


def test_model_mismatch(store: VectorStore) -> None:
    store.ensure_collection("mm", DIM, MODEL)
    for model, dimension in [("other-model", DIM), (MODEL, DIM * 2)]:
        with pytest.raises(Conflict) as refused:
            store.ensure_collection("mm", dimension, model)
        assert refused.value.code == "model_mismatch"


def test_unknown_collection_and_invalid_names(store: VectorStore) -> None:
    with pytest.raises(CollectionNotFound):
        store.get_collection("missing")
    with pytest.raises(CollectionNotFound):
        store.count("missing")
    with pytest.raises(CollectionNotFound):
        store.search("missing", [[0.1] * DIM], 3)
    with pytest.raises(CollectionNotFound):
        store.upsert("missing", records(unit_vectors(np.random.default_rng(0), 1)))
    scope = TenantVectors(store, None)
    for bad in ["", "1abc", "a-b", "a b", "x" * 65, "_a", "a;drop"]:
        with pytest.raises(CollectionNotFound):
            scope.ensure_collection(bad, DIM, MODEL)
        with pytest.raises(CollectionNotFound):
            scope.get_collection(bad)


class _RecordingStore:
    """Answers every call with a collection named as asked, and notes the name."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __getattr__(self, method: str) -> Any:
        def call(name: str, *args: Any, **kwargs: Any) -> Any:
            self.asked.append((method, name))
            return Bookkeeping(model=MODEL, dimension=DIM).info(name)

        return call


def test_every_tenant_call_reaches_the_tenants_own_collection() -> None:
    """Each TenantVectors method on one collection asks the store for the stored name of the
    same method, refuses a name no one could create without asking, and answers a collection
    under the tenant's name."""
    fake = _RecordingStore()
    scope = TenantVectors(cast(VectorStore, fake), "acme")
    scoped = {name for name in dir(TenantVectors) if hasattr(getattr(scope, name), "__wrapped__")}
    assert {"get_collection", "cached_collection", "upsert", "search", "swap"} <= scoped
    for name in sorted(scoped):
        answer = getattr(scope, name)("shoes")
        store_method = getattr(TenantVectors, name).__wrapped__.__name__
        assert fake.asked[-1] == (store_method, "t_acme__shoes")
        assert answer.name == "shoes"
        with pytest.raises(CollectionNotFound, match="no collection a-b"):
            getattr(scope, name)("a-b")
    assert len(fake.asked) == len(scoped)


def test_upsert_twice_stores_once_and_reads_back(store: VectorStore) -> None:
    store.ensure_collection("up", DIM, MODEL)
    vecs = unit_vectors(np.random.default_rng(1), 20)
    assert store.upsert("up", records(vecs)) == 20
    assert store.upsert("up", records(vecs)) == 20
    assert store.count("up") == 20
    assert store.get_collection("up").count == 20
    asset = store.get_asset("up", "a3", with_vector=True)
    assert asset is not None and asset.vector is not None
    assert asset.model_dump(exclude={"vector"}) == records(vecs)[3].model_dump(exclude={"vector"})
    assert np.allclose(asset.vector, vecs[3], atol=1e-6)
    assert store.get_asset("up", "a3").vector is None  # type: ignore[union-attr]
    assert store.get_asset("up", "nope") is None
    got = store.get_vectors("up", ["a1", "a2", "nope"])
    assert set(got) == {"a1", "a2"} and np.allclose(got["a2"], vecs[2], atol=1e-6)


def test_assets_page_in_id_order_while_rows_are_added(store: VectorStore) -> None:
    store.ensure_collection("pages", DIM, MODEL)
    rows = records(unit_vectors(np.random.default_rng(7), 23), "p")
    store.upsert("pages", rows[:10])
    store.upsert("pages", rows[10:20])  # two segments: storage order is not id order
    first = store.list_assets("pages", 5)
    assert [r.asset_id for r in first] == sorted(r.asset_id for r in rows[:20])[:5]
    assert first[0].vector is None
    expected = next(r for r in rows if r.asset_id == first[0].asset_id)
    assert first[0].model_dump() == expected.model_dump(exclude={"vector"}) | {"vector": None}
    store.upsert("pages", rows[20:])  # written between two pages
    seen, after = [r.asset_id for r in first], first[-1].asset_id
    while page := store.list_assets("pages", 5, after):
        seen += [r.asset_id for r in page]
        after = page[-1].asset_id
    later = sorted(r.asset_id for r in rows[20:] if r.asset_id > first[-1].asset_id)
    assert seen == sorted(set(seen)) and set(later) <= set(seen)
    assert len(seen) == 5 + len([r for r in rows if r.asset_id > first[-1].asset_id])
    with pytest.raises(CollectionNotFound):
        store.list_assets("missing", 5)


def test_search_finds_itself_sorted_topk_batched(store: VectorStore) -> None:
    store.ensure_collection("s", DIM, MODEL)
    vecs = unit_vectors(np.random.default_rng(2), 60)
    store.upsert("s", records(vecs[:30]))
    store.upsert("s", records(vecs[30:], prefix="b"))
    results = store.search("s", vecs[:30], top_k=5)  # one batched call, 30 queries
    assert len(results) == 30
    for i, hits in enumerate(results):
        assert len(hits) == 5
        assert hits[0].asset_id == f"a{i}" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    first = results[0][0]
    assert (first.filename, first.source) == ("a0.png", "upload://a0")
    assert first.content_key == "blobs/a0"
    assert first.metadata["color"] == "blue"
    assert store.search("s", [vecs[45].tolist()], top_k=1)[0][0].asset_id == "b15"


def test_filter_and_min_score(store: VectorStore) -> None:
    store.ensure_collection("f", DIM, MODEL)
    vecs = unit_vectors(np.random.default_rng(3), 40)
    store.upsert("f", records(vecs))
    red = store.search("f", vecs[:4], top_k=10, filter={"color": "red"})
    assert all(h.metadata["color"] == "red" for hits in red for h in hits)
    assert red[1][0].asset_id == "a1" and red[0][0].asset_id != "a0"
    combo = store.search("f", vecs[:1], top_k=10, filter={"n": 7, "tag": 'quote"d'})
    assert [h.asset_id for h in combo[0]] == ["a7"]
    by_name = store.search("f", vecs[:1], top_k=10, filter={"filename": "a9.png"})
    assert [h.asset_id for h in by_name[0]] == ["a9"]
    assert store.search("f", vecs[:1], top_k=10, filter={"color": "green"}) == [[]]
    close = store.search("f", vecs[:3], top_k=40, min_score=0.5)
    for i, hits in enumerate(close):
        assert hits and hits[0].asset_id == f"a{i}"
        assert all(h.score >= 0.5 for h in hits)
        assert len(hits) < 40


def test_filter_expression_is_built_safely() -> None:
    assert build_filter({"color": "red", "n": 3, "ok": True}) == (
        'metadata["color"] == "red" and metadata["n"] == 3 and metadata["ok"] == true'
    )
    assert build_filter({"mime_type": "image/png"}) == 'mime_type == "image/png"'
    assert build_filter({"k": 'a" or 1 == 1 or "'}) == r'metadata["k"] == "a\" or 1 == 1 or \""'
    for bad in [
        {"a b": 1},
        {'x"]': 1},
        {"k": [1]},
        {"k": float("nan")},
        {"k": "a\x00"},
        {"filename": 3},
    ]:
        with pytest.raises(ValueError):
            build_filter(bad)  # type: ignore[arg-type]


def test_making_a_collection_does_not_wait_on_index_polling(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymilvus polls an index build every 0.5 s when asked to wait; an empty collection has
    nothing to build, so making one (and reading, writing, searching it) never waits so."""
    from pymilvus.client.grpc_handler import GrpcHandler

    polled: list[str] = []
    waited = GrpcHandler.wait_for_creating_index

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        # recorded, not raised: pymilvus wraps what its calls raise, and _create ignores it
        polled.append(str(kwargs.get("index_name") or args))
        return waited(self, *args, **kwargs)

    monkeypatch.setattr(GrpcHandler, "wait_for_creating_index", counting)
    store.ensure_collection("fresh", DIM, MODEL)
    vectors = unit_vectors(np.random.default_rng(5), 3)
    store.upsert("fresh", records(vectors))
    assert store.search("fresh", vectors[:1], 1)[0][0].asset_id == records(vectors)[0].asset_id
    assert polled == []


def test_concurrent_ensure_is_idempotent(store: VectorStore) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(store.ensure_collection("race", DIM, MODEL).name)
        except Exception as exc:  # recorded, so the assertion shows it
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["race"] * 6
    assert ours(store, "race") == ["race"]


def test_concurrent_ensure_from_two_processes(server: MilvusServer) -> None:
    code = (
        "import sys; from shared.milvus.gateway import VectorStore; "
        f"print(VectorStore(sys.argv[1]).ensure_collection('proc_race', {DIM}, '{MODEL}').name)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, server.uri],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert outs == ["proc_race", "proc_race"]
    VectorStore(server.uri).drop_collection("proc_race")


def test_local_persists_across_reopen(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus")
    vecs = unit_vectors(np.random.default_rng(4), 10)
    with VectorStore(uri) as vs:
        created = vs.ensure_collection("keep", DIM, MODEL)
        vs.upsert("keep", records(vecs))
    # Same process: pymilvus keeps the in-process server; the data must still be there.
    with VectorStore(uri) as vs:
        assert vs.get_collection("keep") == created.model_copy(update={"count": 10})
        assert vs.search("keep", vecs[:1], 1)[0][0].asset_id == "a0"


def test_server_restart_keeps_data(tmp_path: Path) -> None:
    srv = MilvusServer(tmp_path / "restart")
    srv.start()
    vecs = unit_vectors(np.random.default_rng(5), 10)
    try:
        with VectorStore(srv.uri) as vs:
            created = vs.ensure_collection("keep", DIM, MODEL)
            vs.upsert("keep", records(vecs))
        srv.stop()
        srv.start()
        with VectorStore(srv.uri) as vs:
            assert vs.get_collection("keep") == created.model_copy(update={"count": 10})
            assert vs.ensure_collection("keep", DIM, MODEL).created_at == created.created_at
            hits = vs.search("keep", vecs[:2], 3)
            assert [h[0].asset_id for h in hits] == ["a0", "a1"]
            assert vs.get_asset("keep", "a4") is not None
    finally:
        srv.stop()


def test_an_index_left_short_by_a_stopped_server_is_rebuilt(tmp_path: Path) -> None:
    """A Milvus Lite server stopped while writing an index leaves the file short; the data
    is intact, so the collection must load again (its index rebuilt), not fail for good."""
    srv = MilvusServer(tmp_path / "short")
    srv.start()
    vecs = unit_vectors(np.random.default_rng(6), 10)
    try:
        with VectorStore(srv.uri) as vs:
            vs.ensure_collection("keep", DIM, MODEL)
            vs.upsert("keep", records(vecs))
            time.sleep(1)  # let the background index build finish, then cut its file short
        srv.stop()
        indexes = list((tmp_path / "short").rglob("*.idx"))
        assert indexes
        for index in indexes:
            index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
        srv.start()
        with VectorStore(srv.uri) as vs:
            assert vs.ensure_collection("keep", DIM, MODEL).count == 10
            assert [h[0].asset_id for h in vs.search("keep", vecs[:2], 3)] == ["a0", "a1"]
    finally:
        srv.stop()


def test_ping_fails_when_unreachable() -> None:
    store = VectorStore(f"http://127.0.0.1:{_free_port()}")  # connects on first use
    with pytest.raises(VectorStoreUnavailable):
        store.ping()
