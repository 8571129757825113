"""Search jobs: encode every query (text, uploaded image or stored asset); one batched vector
search, one batched keyword search, and the hybrid queries' two lists fused by rank."""

from __future__ import annotations

import time

import numpy as np

from shared.contract import (
    ErrorCode,
    Finder,
    ItemError,
    Progress,
    SearchMode,
    SearchQuery,
    SearchRequest,
    SearchResult,
)
from shared.errors import CodedError, InputRejected, NotFound
from shared.jobs.records import START
from shared.metrics import SEARCH_STAGE
from shared.milvus.errors import CollectionNotFound, KeywordSearchUnavailable
from shared.milvus.ranking import FUSION_DEPTH, fuse
from shared.milvus.records import VectorHit
from shared.milvus.tenants import TenantVectors
from workers.assets import decode_asset
from workers.context import Target, WorkerContext
from workers.query_batcher import Searcher


def encode_queries(
    ctx: WorkerContext, request: SearchRequest, tenant: str | None, target: Target
) -> tuple[dict[int, np.ndarray], list[ItemError]]:
    """Query index to its unit vector, by the target version's model (keyword-only queries
    need none); queries that cannot be encoded become item errors."""
    vectors: dict[int, np.ndarray] = {}
    errors: list[ItemError] = []
    queries = [(i, q) for i, q in enumerate(request.queries) if "vector" in q.finders]
    texts = [(i, q.text) for i, q in queries if q.text is not None]
    if texts:
        encoded = ctx.texts(target.model).encode([text for _, text in texts])
        vectors.update({i: vector for (i, _), vector in zip(texts, encoded, strict=True)})
    for index, query in queries:
        if query.text is not None:
            continue
        try:
            vectors[index] = _encode_reference(ctx, request.collection, query, tenant, target)
        except (InputRejected, NotFound) as exc:
            errors.append(exc.item_error(index, query.source))
    return vectors, errors


def _encode_reference(
    ctx: WorkerContext, collection: str, query: SearchQuery, tenant: str | None, target: Target
) -> np.ndarray:
    if query.asset_id is not None:
        found = ctx.scoped(tenant).get_vectors(collection, [query.asset_id], target.version)
        if query.asset_id not in found:
            raise NotFound(
                ErrorCode.asset_not_found, f"asset {query.asset_id} is not in {collection}"
            )
        return np.asarray(found[query.asset_id], dtype=np.float32)
    data, upload = ctx.uploads.read(str(query.upload_id), tenant)
    asset = decode_asset(ctx, data, upload.filename, query.source, {}, target.model)
    return np.asarray(ctx.encoder(target.model).encode_images([asset.pixels])[0])


def depth(request: SearchRequest, query: SearchQuery) -> int:
    """How many hits a query's searches bring back: a hybrid query fuses deeper lists."""
    return (
        max(request.top_k, FUSION_DEPTH)
        if query.search_mode == SearchMode.hybrid
        else request.top_k
    )


def search_vectors(
    scope: Searcher, request: SearchRequest, vectors: dict[int, np.ndarray], version: int
) -> dict[int, list[VectorHit]]:
    """One batched Milvus search for every encoded query."""
    if not vectors:
        return {}
    order = sorted(vectors)
    limits = {i: depth(request, request.queries[i]) for i in order}
    found = scope.search(
        request.collection,
        np.stack([vectors[i] for i in order]),
        max(limits.values()),
        request.filter,
        request.min_score,
        version,
    )
    return {i: hits[: limits[i]] for i, hits in zip(order, found, strict=True)}


def search_keywords(
    scope: TenantVectors, request: SearchRequest, version: int
) -> tuple[dict[int, list[VectorHit]], list[ItemError]]:
    """One batched BM25 search for every keyword and hybrid query; where the collection has
    no keyword search, those queries fail as items."""
    wanted = [(i, q) for i, q in enumerate(request.queries) if "keyword" in q.finders]
    if not wanted:
        return {}, []
    try:
        found = scope.keyword_search(
            request.collection,
            [str(q.text) for _, q in wanted],
            max(depth(request, q) for _, q in wanted),
            request.filter,
            version,
        )
    except KeywordSearchUnavailable as exc:
        return {}, [exc.item_error(i, q.source) for i, q in wanted]
    return {i: hits for (i, _), hits in zip(wanted, found, strict=True)}, []


def rank(
    request: SearchRequest, lists: dict[Finder, dict[int, list[VectorHit]]]
) -> dict[int, list[VectorHit]]:
    """Each query's hits from the lists its mode asks for; a query missing one (it failed)
    gets none."""
    ranked: dict[int, list[VectorHit]] = {}
    for index, query in enumerate(request.queries):
        if not all(index in lists[finder] for finder in query.finders):
            continue
        if query.search_mode == SearchMode.hybrid:
            by_finder = {finder: lists[finder][index] for finder in query.finders}
            ranked[index] = fuse(by_finder, request.top_k)
        else:
            ranked[index] = lists[query.finders[0]][index][: request.top_k]
    return ranked


def run_search(ctx: WorkerContext, job_id: str) -> None:
    started = time.perf_counter()
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, SearchRequest)
    SEARCH_STAGE.labels("claim").observe(time.perf_counter() - started)
    try:
        try:
            ranked, errors = search(ctx, request, tenant, fresh=False)
        except CollectionNotFound:
            # the version this process remembered was dropped (a re-index swapped another
            # in): once more, with what answers now
            ranked, errors = search(ctx, request, tenant, fresh=True)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return
    results = [
        [hit.public(request.collection) for hit in ranked.get(i, [])]
        for i in range(len(request.queries))
    ]
    progress = Progress(total=len(request.queries), succeeded=len(ranked), failed=len(errors))
    started = time.perf_counter()
    ctx.jobs.complete(job_id, SearchResult(results=results), progress, errors)
    SEARCH_STAGE.labels("record").observe(time.perf_counter() - started)


def search(
    ctx: WorkerContext, request: SearchRequest, tenant: str | None, fresh: bool
) -> tuple[dict[int, list[VectorHit]], list[ItemError]]:
    """Every query against one version of the collection, encoded by that version's model
    (whatever a re-index swaps in meanwhile)."""
    scope = ctx.scoped(tenant)
    started = time.perf_counter()
    target = ctx.target(scope, request.collection, fresh)
    SEARCH_STAGE.labels("target").observe(time.perf_counter() - started)
    if target.version is None:
        raise CollectionNotFound(scope.physical(request.collection))
    vectors, errors = encode_queries(ctx, request, tenant, target)
    by_vector = search_vectors(ctx.searches(scope), request, vectors, target.version)
    by_keyword, keyword_errors = search_keywords(scope, request, target.version)
    return rank(request, {"vector": by_vector, "keyword": by_keyword}), errors + keyword_errors
