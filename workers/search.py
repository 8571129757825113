"""Search jobs: encode every query (text, uploaded image or stored asset); one batched search."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.images import ImageRejected, decode_rgb
from shared.jobs import ItemError, Progress
from shared.schemas import SearchQuery, SearchRequest
from shared.sources import SourceRejected
from shared.tasks import RUN_SEARCH
from shared.vectors import CollectionNotFound, Hit
from workers.celery_app import app
from workers.context import ContextTask, WorkerContext


def content_url(collection: str, asset_id: str) -> str:
    return f"/v1/collections/{collection}/assets/{asset_id}/content"


def hit_json(collection: str, hit: Hit) -> dict[str, Any]:
    return {
        "asset_id": hit.asset_id,
        "score": hit.score,
        "filename": hit.filename,
        "source": hit.source,
        "metadata": hit.metadata,
        "content_url": content_url(collection, hit.asset_id),
    }


def encode_queries(
    ctx: WorkerContext, request: SearchRequest, tenant: str | None
) -> tuple[dict[int, np.ndarray], list[ItemError]]:
    """Query index to its unit vector; queries that cannot be encoded become item errors."""
    vectors: dict[int, np.ndarray] = {}
    errors: list[ItemError] = []
    queries = list(enumerate(request.queries))
    texts = [(i, q.text) for i, q in queries if q.text is not None]
    if texts:
        encoded = ctx.encoder().encode_texts([text for _, text in texts])
        vectors.update({i: vector for (i, _), vector in zip(texts, encoded, strict=True)})
    for index, query in queries:
        if query.text is not None:
            continue
        try:
            vectors[index] = _encode_reference(ctx, request.collection, query, tenant)
        except (SourceRejected, ImageRejected, LookupError) as exc:
            code = getattr(exc, "code", "asset_not_found")
            errors.append(
                ItemError(index=index, source=_describe(query), code=code, message=str(exc))
            )
    return vectors, errors


def _encode_reference(
    ctx: WorkerContext, collection: str, query: SearchQuery, tenant: str | None
) -> np.ndarray:
    if query.asset_id is not None:
        found = ctx.scoped(tenant).get_vectors(collection, [query.asset_id])
        if query.asset_id not in found:
            raise LookupError(f"asset {query.asset_id} is not in {collection}")
        return np.asarray(found[query.asset_id], dtype=np.float32)
    data, _ = ctx.uploads.read(str(query.upload_id), tenant)
    encoder = ctx.encoder()
    image = decode_rgb(data, ctx.settings.max_image_pixels, draft_size=encoder.input_resolution)
    return np.asarray(encoder.encode_images(encoder.preprocess(image).unsqueeze(0))[0])


def _describe(query: SearchQuery) -> str:
    return f"asset:{query.asset_id}" if query.asset_id else f"upload:{query.upload_id}"


def search_vectors(
    ctx: WorkerContext, request: SearchRequest, vectors: list[np.ndarray], tenant: str | None
) -> list[list[Hit]]:
    """One batched Milvus search for every encoded query."""
    if not vectors:
        return []
    return ctx.scoped(tenant).search(
        request.collection, np.stack(vectors), request.top_k, request.filter, request.min_score
    )


def run_search(ctx: WorkerContext, job_id: str) -> None:
    if not ctx.jobs.mark_running(job_id):
        return
    request = SearchRequest.model_validate(ctx.jobs.request(job_id))
    tenant = ctx.jobs.tenant(job_id)
    vectors, errors = encode_queries(ctx, request, tenant)
    order = sorted(vectors)
    try:
        hits = search_vectors(ctx, request, [vectors[i] for i in order], tenant)
    except CollectionNotFound as exc:
        ctx.jobs.fail(job_id, "collection_not_found", str(exc))
        return
    by_index = dict(zip(order, hits, strict=True))
    results = [
        [hit_json(request.collection, hit) for hit in by_index.get(i, [])]
        for i in range(len(request.queries))
    ]
    progress = Progress(total=len(request.queries), succeeded=len(order), failed=len(errors))
    ctx.jobs.complete(job_id, {"results": results}, progress, errors)


@app.task(name=RUN_SEARCH, base=ContextTask, bind=True, acks_late=True)
def run_search_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        run_search(self.ctx, job_id)
