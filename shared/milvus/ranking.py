"""Hybrid search's fusion: reciprocal-rank fusion of the vector and the keyword hit lists.

Done here rather than by Milvus' `hybrid_search` with its RRF ranker so that each hit can
say which searches found it, ties break the same way on every backend, and a Milvus server
without BM25 fails one query cleanly instead of the whole call.
"""

from __future__ import annotations

from shared.contract import Finder
from shared.milvus.records import VectorHit

# How many candidates each search of a hybrid query brings to the fusion.
FUSION_DEPTH = 50
# The k of Cormack et al.'s reciprocal-rank fusion, as Milvus' RRFRanker defaults to.
RRF_K = 60
# Finders in the order ties are broken: an exact word match is the stronger evidence.
TIE_ORDER: tuple[Finder, ...] = ("keyword", "vector")


def fuse(ranked: dict[Finder, list[VectorHit]], top_k: int, k: int = RRF_K) -> list[VectorHit]:
    """Each hit scores the sum of 1 / (k + rank) over the lists that hold it. Equal scores:
    found by more searches first, then a keyword hit before a vector one, then by rank."""
    scores: dict[str, float] = {}
    best_rank: dict[str, tuple[int, int]] = {}
    finders: dict[str, list[Finder]] = {}
    hits: dict[str, VectorHit] = {}
    for order, finder in enumerate(TIE_ORDER):
        for rank, hit in enumerate(ranked.get(finder, []), start=1):
            scores[hit.asset_id] = scores.get(hit.asset_id, 0.0) + 1.0 / (k + rank)
            best_rank.setdefault(hit.asset_id, (order, rank))
            finders.setdefault(hit.asset_id, []).append(finder)
            hits.setdefault(hit.asset_id, hit)
    ordered = sorted(
        scores, key=lambda a: (-scores[a], -len(finders[a]), best_rank[a][0], best_rank[a][1])
    )
    return [
        hits[a].model_copy(
            update={"score": scores[a], "found_by": sorted(finders[a], key=_canonical)}
        )
        for a in ordered[:top_k]
    ]


def _canonical(finder: Finder) -> int:
    return 0 if finder == "vector" else 1
