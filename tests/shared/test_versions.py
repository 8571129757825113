"""The gateway's versions (an alias per collection), keyword search and range search, on
Milvus Lite in-process and a real Milvus 2.3.5 server (which has no BM25: said so, and
skipped there)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.contract import ErrorCode
from shared.errors import CodedError, Conflict
from shared.milvus.errors import CollectionNotFound, KeywordSearchUnavailable, VersionNotFound
from shared.milvus.gateway import VectorStore
from shared.milvus.records import AssetRecord
from shared.milvus.schema import (
    HNSW_BUILD,
    METADATA_PROPERTY,
    Bookkeeping,
    keyword_text,
    schema,
)
from shared.milvus.tenants import TenantVectors
from shared.milvus.write_marks import WriteMarks
from tests.support.vectors import DIM, MODEL, records, unit_vectors


@pytest.fixture(params=["lite", "milvus"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_client: redis.Redis
) -> Iterator[VectorStore]:
    if request.param == "lite":
        uri = str(tmp_path / "milvus")
    else:
        uri = request.getfixturevalue("milvus_server").uri
    vs = VectorStore(uri, WriteMarks(redis_client))
    before = {info.name for info in vs.list_collections()}
    yield vs
    for info in vs.list_collections():
        if info.name not in before:
            vs.drop_collection(info.name)
    vs.close()


def needs_bm25(store: VectorStore) -> None:
    if not store.keyword_capable:
        pytest.skip("BM25 full-text search needs Milvus 2.5+; the test server is 2.3.5")


def test_a_collection_is_an_alias_over_version_one(store: VectorStore) -> None:
    info = store.ensure_collection("shots", DIM, MODEL)
    assert (info.name, info.version) == ("shots", 1)
    assert info.keyword_search == store.keyword_capable
    raw = store._client  # noqa: SLF001 (what Milvus holds, not what the gateway says)
    assert "shots__v1" in raw.list_collections()
    assert raw.describe_alias("shots")["collection_name"] == "shots__v1"
    assert [c.name for c in store.list_collections() if c.name.startswith("shots")] == ["shots"]


def test_next_version_is_built_beside_and_swapped_in(store: VectorStore) -> None:
    rng = np.random.default_rng(1)
    store.ensure_collection("reels", DIM, MODEL)
    first = records(unit_vectors(rng, 6))
    store.upsert("reels", first)

    nxt = store.create_version("reels", "other-clip", DIM + 8)
    assert (nxt.version, nxt.model, nxt.dimension) == (2, "other-clip", DIM + 8)
    # the alias still answers from version 1
    assert store.get_collection("reels").model == MODEL
    wide = unit_vectors(np.random.default_rng(2), 6)
    wide = np.hstack([wide, np.zeros((6, 8), np.float32)])
    store.upsert("reels", records(wide), version=2)
    assert store.count("reels") == 6 and store.count("reels", version=2) == 6
    old_hits = store.search("reels", [first[0].vector], top_k=1)
    assert old_hits[0][0].asset_id == "a0"

    store.swap("reels", 2)
    info = store.get_collection("reels")
    assert (info.version, info.model, info.dimension, info.count) == (2, "other-clip", 24, 6)
    assert store.search("reels", wide[:1], top_k=1)[0][0].asset_id == "a0"
    # a job that encoded with version 1's model can still ask version 1
    assert store.search("reels", [first[3].vector], top_k=1, version=1)[0][0].asset_id == "a3"
    versions = store.versions("reels")
    assert [(v.version, v.current, v.count) for v in versions] == [(1, False, 6), (2, True, 6)]
    assert [c.name for c in store.list_collections() if c.name.startswith("reels")] == ["reels"]

    with pytest.raises(Conflict) as in_use:
        store.drop_version("reels", 2)
    assert in_use.value.code == ErrorCode.version_in_use
    store.drop_version("reels", 1)
    with pytest.raises(VersionNotFound):
        store.drop_version("reels", 1)
    assert [v.version for v in store.versions("reels")] == [2]

    store.drop_collection("reels")
    assert not store.has_collection("reels")
    assert not any(n.startswith("reels") for n in store._client.list_collections())  # noqa: SLF001
    with pytest.raises(CollectionNotFound):
        store.get_collection("reels")


def test_a_collection_from_before_versions_works_and_is_adopted(store: VectorStore) -> None:
    # As the gateway made collections before versions: a plain collection under its name.
    book = Bookkeeping(model=MODEL, dimension=DIM)
    raw = store._client  # noqa: SLF001
    index = raw.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="COSINE", params=HNSW_BUILD)
    old = json.loads(book.dump())
    del old["version"], old["keyword"]
    raw.create_collection(
        "legacy",
        schema=schema(book),
        index_params=index,
        properties={METADATA_PROPERTY: json.dumps(old)},
    )
    rng = np.random.default_rng(3)
    rows = records(unit_vectors(rng, 4))
    store.upsert("legacy", rows)
    info = store.get_collection("legacy")
    assert (info.version, info.keyword_search, info.count) == (1, False, 4)
    assert [c.name for c in store.list_collections() if c.name.startswith("legacy")] == ["legacy"]
    assert [(v.version, v.current) for v in store.versions("legacy")] == [(1, True)]
    with pytest.raises(KeywordSearchUnavailable):
        store.keyword_search("legacy", ["a1"], top_k=3)

    store.adopt("legacy")
    assert raw.describe_alias("legacy")["collection_name"] == "legacy__v1"
    assert store.search("legacy", [rows[2].vector], top_k=1)[0][0].asset_id == "a2"
    assert store.create_version("legacy", MODEL, DIM).version == 2
    store.drop_collection("legacy")
    assert not any(n.startswith("legacy") for n in raw.list_collections())


def test_tenants_see_their_names_and_versions(store: VectorStore) -> None:
    mine = TenantVectors(store, "acme")
    mine.ensure_collection("v2", DIM, MODEL)  # a name that looks like a version suffix
    assert [c.name for c in mine.list_collections()] == ["v2"]
    assert mine.create_version("v2", MODEL, DIM).name == "v2"
    assert [v.version for v in mine.versions("v2")] == [1, 2]
    assert TenantVectors(store, "other").list_collections() == []
    mine.drop_collection("v2")


def test_keyword_text_holds_filename_words_and_metadata() -> None:
    text = keyword_text(
        "img_003.png",
        {
            "sku": "ZX-42",
            "caption": "red shoe",
            "tags": ["summer", "sale"],
            "size": 42,
            "flag": True,
            "nested": {"a": "deep"},
        },
    )
    assert text == "img_003.png img 003 png ZX-42 red shoe summer sale 42 deep"


def test_keyword_search_finds_a_sku(store: VectorStore) -> None:
    needs_bm25(store)
    rng = np.random.default_rng(4)
    store.ensure_collection("skus", DIM, MODEL)
    rows = records(unit_vectors(rng, 12))
    rows[7] = rows[7].model_copy(update={"metadata": {"sku": "ZX-42", "caption": "a red shoe"}})
    store.upsert("skus", rows)
    hits = store.keyword_search("skus", ["ZX-42", "shoe", "a5.png", "nothing-like-it"], top_k=5)
    assert hits[0][0].asset_id == "a7" and hits[0][0].found_by == ["keyword"]
    assert hits[0][0].score > 0
    assert [h.asset_id for h in hits[1]] == ["a7"]
    assert hits[2][0].asset_id == "a5"
    assert hits[3] == []
    # the filter narrows keyword hits as it does vector ones
    only_blue = store.keyword_search("skus", ["png"], top_k=20, filter={"color": "blue"})
    assert {h.asset_id for h in only_blue[0]} <= {f"a{i}" for i in range(0, 12, 2)}


def test_keyword_search_is_refused_where_the_server_lacks_bm25(store: VectorStore) -> None:
    if store.keyword_capable:
        pytest.skip("this backend has BM25")
    store.ensure_collection("nobm25", DIM, MODEL)
    with pytest.raises(CodedError) as refused:
        store.keyword_search("nobm25", ["x"], top_k=3)
    assert refused.value.code == ErrorCode.keyword_search_unavailable
    assert "2.5" in refused.value.message


def test_neighbours_are_a_range_search(store: VectorStore) -> None:
    rng = np.random.default_rng(5)
    store.ensure_collection("near", DIM, MODEL)
    base = unit_vectors(rng, 5)
    twin = base[0] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
    twin /= np.linalg.norm(twin)
    rows = records(np.vstack([base, twin[None, :]]))
    store.upsert("near", rows)
    found = store.neighbours("near", np.vstack([base[0], base[1]]), 0.95, 10, version=None)
    assert [a for a, _ in found[0]] == ["a0", "a5"] or [a for a, _ in found[0]] == ["a5", "a0"]
    assert all(score >= 0.95 for _, score in found[0])
    assert [a for a, _ in found[1]] == ["a1"]


def test_records_written_keep_every_field(store: VectorStore) -> None:
    store.ensure_collection("fields", DIM, MODEL)
    row = AssetRecord(
        asset_id="x",
        vector=unit_vectors(np.random.default_rng(6), 1)[0].tolist(),
        filename="f.png",
        metadata={"sku": "Q-1"},
    )
    store.upsert("fields", [row])
    got = store.list_assets("fields", 10)
    assert [(r.asset_id, r.filename, r.metadata) for r in got] == [("x", "f.png", {"sku": "Q-1"})]
