"""Reciprocal-rank fusion: exact scores, ties and which searches found each hit."""

from __future__ import annotations

import pytest

from shared.contract import Finder
from shared.milvus.ranking import RRF_K, fuse
from shared.milvus.records import VectorHit


def hits(finder: Finder, *ids: str) -> list[VectorHit]:
    return [
        VectorHit(
            asset_id=a,
            score=1.0 - i / 10,
            filename="",
            source="",
            metadata={},
            content_key="",
            found_by=[finder],
        )
        for i, a in enumerate(ids)
    ]


def test_a_hit_both_searches_found_sums_its_reciprocal_ranks() -> None:
    fused = fuse({"vector": hits("vector", "a", "b", "c"), "keyword": hits("keyword", "c")}, 3)
    assert [h.asset_id for h in fused] == ["c", "a", "b"]
    assert fused[0].score == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fused[0].found_by == ["vector", "keyword"]
    assert fused[1].found_by == ["vector"] and fused[1].score == pytest.approx(1 / (RRF_K + 1))


def test_equal_scores_put_the_keyword_hit_first_and_top_k_cuts() -> None:
    fused = fuse({"vector": hits("vector", "v1", "v2"), "keyword": hits("keyword", "k1", "k2")}, 3)
    assert [h.asset_id for h in fused] == ["k1", "v1", "k2"]
    scores = [h.score for h in fused]
    assert scores == sorted(scores, reverse=True)


def test_one_empty_list_leaves_the_other_in_order() -> None:
    fused = fuse({"vector": hits("vector", "x", "y"), "keyword": []}, 10)
    assert [(h.asset_id, h.found_by) for h in fused] == [("x", ["vector"]), ("y", ["vector"])]
