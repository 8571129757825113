"""Generate jobs: references (named or retrieved) plus a prompt → Gemini → images, saved back
with their lineage when asked."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from shared.blobs import asset_key, generated_key
from shared.gemini import GeneratedImage, GenerationError, GenerationOutput
from shared.images import ImageInfo, decode_rgb, downscale, sniff_image
from shared.jobs import ItemError, Progress
from shared.schemas import GenerateRequest
from shared.tasks import RUN_GENERATE
from shared.vectors import AssetRecord, TenantVectors
from workers.celery_app import app
from workers.context import ContextTask, WorkerContext


def resolve_references(
    ctx: WorkerContext, scope: TenantVectors, request: GenerateRequest
) -> list[str]:
    """The reference asset ids: the named ones, or the top hits of the reference query."""
    refs = request.references
    if refs is None:
        return []
    if refs.asset_ids is not None:
        return list(refs.asset_ids)
    vector = ctx.encoder().encode_texts([str(refs.query)])
    hits = scope.search(request.collection, vector, refs.top_k)[0]
    return [hit.asset_id for hit in hits]


def load_references(
    ctx: WorkerContext, scope: TenantVectors, collection: str, asset_ids: list[str]
) -> list[tuple[bytes, str]]:
    """Reference images downscaled to a sensible longest side, in the order given."""
    images = []
    for asset_id in asset_ids:
        record = scope.get_asset(collection, asset_id)
        if record is None:
            raise GenerationError("asset_not_found", f"reference {asset_id} is not in {collection}")
        data = ctx.blobs.get(record.content_key)
        images.append(
            downscale(data, ctx.settings.reference_max_side, ctx.settings.max_image_pixels)
        )
    return images


async def generate_variants(
    ctx: WorkerContext, request: GenerateRequest, references: list[tuple[bytes, str]]
) -> list[GenerationOutput | GenerationError]:
    """`count` calls side by side; each variant succeeds or fails on its own."""
    generator = ctx.generator()
    calls = [
        generator.generate(request.prompt, references, request.aspect_ratio, request.image_size)
        for _ in range(request.count)
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if not isinstance(outcome, GenerationOutput | GenerationError):
            raise outcome  # a bug, not an upstream answer
    return outcomes  # type: ignore[return-value]


def save_image(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    number: int,
    image: GeneratedImage,
    request: GenerateRequest,
    references: list[str],
    model: str,
) -> dict[str, Any]:
    ctx.blobs.put(generated_key(job_id, number), image.data)
    # The job record expires job_ttl after it finishes; its images go a minute after it.
    ctx.expiry.schedule(generated_key(job_id, number), ctx.settings.job_ttl_s + 60)
    info = sniff_image(image.data, ctx.settings.max_image_pixels)
    entry: dict[str, Any] = {
        "content_url": f"/v1/jobs/{job_id}/images/{number}",
        "mime_type": info.mime_type,
        "width": info.width,
        "height": info.height,
    }
    if request.save_to_collection:
        lineage = {
            "prompt": request.prompt,
            "references": references,
            "model": model,
            "job_id": job_id,
        }
        entry["asset_id"] = _save_to_collection(
            ctx, scope, request.collection, image.data, info, lineage
        )
    return entry


def _save_to_collection(
    ctx: WorkerContext,
    scope: TenantVectors,
    collection: str,
    data: bytes,
    info: ImageInfo,
    lineage: dict[str, Any],
) -> str:
    encoder = ctx.encoder()
    image = decode_rgb(data, ctx.settings.max_image_pixels, draft_size=encoder.input_resolution)
    vector = encoder.encode_images(encoder.preprocess(image).unsqueeze(0))[0]
    asset_id = hashlib.sha256(data).hexdigest()
    key = asset_key(asset_id)
    ctx.blobs.put(key, data)
    ctx.upsert(
        scope,
        collection,
        [
            AssetRecord(
                asset_id=asset_id,
                vector=vector.tolist(),
                filename=f"generated-{lineage['job_id']}.png",
                source=f"generated:{lineage['job_id']}",
                content_key=key,
                mime_type=info.mime_type,
                width=info.width,
                height=info.height,
                metadata={"generated": True, "lineage": lineage},
                created_at=time.time(),
            )
        ],
    )
    return asset_id


def run_generate(ctx: WorkerContext, job_id: str) -> None:
    if not ctx.jobs.mark_running(job_id):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    scope = ctx.scoped(ctx.jobs.tenant(job_id))
    try:
        references = resolve_references(ctx, scope, request)
        reference_images = load_references(ctx, scope, request.collection, references)
    except GenerationError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return
    outcomes = ctx.run_async(generate_variants(ctx, request, reference_images))
    finish(ctx, scope, job_id, request, references, outcomes)


def finish(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    references: list[str],
    outcomes: list[GenerationOutput | GenerationError],
) -> None:
    outputs = [o for o in outcomes if isinstance(o, GenerationOutput)]
    failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, GenerationError)]
    if not outputs:
        error = failures[0][1]
        ctx.jobs.fail(job_id, error.code, str(error))
        return
    model = outputs[0].model or ctx.settings.gemini_model
    images = [image for output in outputs for image in output.images]
    entries = [
        save_image(ctx, scope, job_id, number, image, request, references, model)
        for number, image in enumerate(images)
    ]
    result = {
        "images": entries,
        "text": "\n".join(o.text for o in outputs if o.text),
        "references": references,
        "model": model,
    }
    errors = [
        ItemError(index=i, source=f"variant:{i}", code=e.code, message=str(e)) for i, e in failures
    ]
    progress = Progress(total=request.count, succeeded=len(outputs), failed=len(failures))
    ctx.jobs.complete(job_id, result, progress, errors)


@app.task(name=RUN_GENERATE, base=ContextTask, bind=True, acks_late=True)
def run_generate_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        run_generate(self.ctx, job_id)
