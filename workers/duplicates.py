"""Duplicates jobs: near-duplicate clusters over a whole collection.

A plan pages through the collection's asset ids and sends them out in batches; each batch
fetches its vectors and asks Milvus for every neighbour at least `threshold` similar (a range
search, many queries a call), keeping the pairs; a last step joins the pairs into clusters
(connected components), measures each cluster's lowest pairwise similarity exactly, and
stores them largest first. Batches run on any number of workers with a progress count, so
a collection far larger than one search can answer is covered.
"""

from __future__ import annotations

import json
import logging

import networkx as nx
import numpy as np

from shared import keys
from shared.contract import CLUSTERS_SHOWN, Cluster, DuplicatesRequest, DuplicatesResult
from shared.errors import CodedError
from shared.jobs.records import START, THEN
from shared.milvus.tenants import TenantVectors
from shared.tasks import CLUSTER_DUPLICATES, DUPLICATES_BATCH
from workers.context import WorkerContext
from workers.retries import with_retries

log = logging.getLogger("assetrag.duplicates")
# Clusters up to this size get their lowest similarity over every pair of members (a
# 4,096² matrix is 64 MiB); larger ones over the pairs the searches found.
EXACT_UP_TO = 4096
Pair = tuple[str, str, float]


def plan_duplicates(ctx: WorkerContext, job_id: str) -> int:
    """Pages through the collection's ids into batches; returns how many were sent."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, DuplicatesRequest)
    scope = ctx.scoped(tenant)
    try:
        # The version that answers now is the one compared, whatever a re-index swaps in.
        version = scope.get_collection(request.collection, with_count=False).version
        ids = scope.asset_ids(request.collection, version)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return 0
    size = ctx.settings.duplicates_batch_size
    batches = [
        (f"b{n}", ctx.queue.message(DUPLICATES_BATCH, job_id, f"b{n}", version, ids[i : i + size]))
        for n, i in enumerate(range(0, len(ids), size))
    ]
    last = ctx.queue.message(CLUSTER_DUPLICATES, job_id, version)
    result = summary(request, scanned=len(ids), clusters=[])
    return len(batches) if ctx.jobs.plan(job_id, len(ids), batches, result, then=last) else 0


def find_pairs(
    scope: TenantVectors,
    request: DuplicatesRequest,
    version: int,
    asset_ids: list[str],
    neighbours: int,
) -> list[Pair]:
    """Every pair (lower id first) of a batch asset and a neighbour at least as similar as
    the threshold. Range search is approximate: a pair missed from one side is usually
    found from the other, and clusters join through any member."""
    vectors = scope.get_vectors(request.collection, asset_ids, version)
    present = [a for a in asset_ids if a in vectors]
    if not present:
        return []
    found = scope.neighbours(
        request.collection,
        np.asarray([vectors[a] for a in present], dtype=np.float32),
        request.threshold,
        neighbours + 1,  # the asset finds itself too
        version,
    )
    pairs: dict[tuple[str, str], float] = {}
    for asset_id, hits in zip(present, found, strict=True):
        for other, score in hits:
            if other != asset_id and score >= request.threshold:
                pairs[(min(asset_id, other), max(asset_id, other))] = score
    return [(a, b, score) for (a, b), score in sorted(pairs.items())]


def duplicates_batch(
    ctx: WorkerContext, job_id: str, batch_id: str, version: int, asset_ids: list[str]
) -> None:
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, DuplicatesRequest)
    scope = ctx.scoped(tenant)
    pairs = find_pairs(scope, request, version, asset_ids, ctx.settings.duplicates_neighbours)
    if pairs:
        # A batch delivered twice adds its pairs twice: joining them is idempotent.
        ctx.redis.rpush(keys.job_pairs(job_id), *(json.dumps(pair) for pair in pairs))
    ctx.jobs.complete_batch(job_id, batch_id, len(asset_ids), [], {})


def duplicates_batch_with_retries(
    ctx: WorkerContext, job_id: str, batch_id: str, version: int, asset_ids: list[str]
) -> None:
    """A batch that fails for a while (Milvus busy or restarting) is tried again; one that
    fails for good fails the job, since clusters without its pairs would be wrong."""

    def give_up(error: CodedError) -> None:
        ctx.jobs.fail(job_id, error.code, error.message)

    with_retries(
        ctx,
        job_id,
        batch_id,
        lambda: duplicates_batch(ctx, job_id, batch_id, version, asset_ids),
        give_up,
    )


def read_pairs(ctx: WorkerContext, job_id: str) -> nx.Graph:
    """The pairs as a graph: assets are nodes, an edge's weight is their similarity."""
    graph = nx.Graph()
    key, start, step = keys.job_pairs(job_id), 0, 10_000
    while chunk := ctx.redis.lrange(key, start, start + step - 1):
        for raw in chunk:
            a, b, score = json.loads(raw)
            graph.add_edge(a, b, weight=score)
        start += step
    return graph


def lowest_similarity(
    scope: TenantVectors, collection: str, version: int, graph: nx.Graph, members: list[str]
) -> float:
    """Over every pair of members (a chain of near-duplicates can hold two far apart), or
    for a cluster past EXACT_UP_TO members, over the pairs found."""
    if len(members) > EXACT_UP_TO:
        return float(min(w for _, _, w in graph.subgraph(members).edges(data="weight")))
    found = scope.get_vectors(collection, members, version)
    matrix = np.asarray([found[m] for m in members if m in found], dtype=np.float32)
    if len(matrix) < 2:
        return 1.0
    similarity = matrix @ matrix.T
    return float(similarity[np.triu_indices(len(matrix), k=1)].min())


def cluster_duplicates(ctx: WorkerContext, job_id: str, version: int) -> None:
    if not ctx.jobs.start_work(job_id, THEN, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, DuplicatesRequest)
    scope = ctx.scoped(tenant)
    graph = read_pairs(ctx, job_id)
    found = [
        Cluster(
            asset_ids=members,
            min_similarity=lowest_similarity(scope, request.collection, version, graph, members),
        )
        for members in (sorted(c) for c in nx.connected_components(graph))
    ]
    found.sort(key=lambda c: (-len(c.asset_ids), -c.min_similarity, c.asset_ids[0]))
    pipe = ctx.redis.pipeline()
    pipe.delete(keys.job_clusters(job_id), keys.job_pairs(job_id))
    if found:
        pipe.rpush(keys.job_clusters(job_id), *(c.model_dump_json() for c in found))
    pipe.execute()
    job = ctx.jobs.get(job_id)
    scanned = job.progress.total if job is not None else 0
    ctx.jobs.complete(job_id, summary(request, scanned, found))
    log.info("job %s: %d clusters among %d assets", job_id, len(found), scanned)


def summary(request: DuplicatesRequest, scanned: int, clusters: list[Cluster]) -> DuplicatesResult:
    return DuplicatesResult(
        collection=request.collection,
        threshold=request.threshold,
        scanned=scanned,
        cluster_count=len(clusters),
        duplicate_count=sum(len(c.asset_ids) for c in clusters),
        clusters=clusters[:CLUSTERS_SHOWN],
    )
