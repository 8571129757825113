"""Generate jobs: references (named or retrieved) plus a prompt → Gemini → images, saved back
with their lineage when asked."""

from __future__ import annotations

import asyncio

from shared import contract
from shared.blobs import generated_key
from shared.contract import ErrorCode, GenerateRequest, GenerateResult, ItemError, Progress
from shared.errors import CodedError, NotFound
from shared.gemini import GenerationError, GenerationOutput, ImageBytes
from shared.images import downscale, sniff_image
from shared.jobs import START
from shared.tasks import RUN_GENERATE
from shared.vectors import TenantVectors
from workers.assets import decode_asset, store_assets
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
    target = ctx.target(scope, request.collection)
    vector = ctx.texts(target.model).encode([str(refs.query)])
    hits = scope.search(request.collection, vector, refs.top_k, version=target.version)[0]
    return [hit.asset_id for hit in hits]


def load_references(
    ctx: WorkerContext, scope: TenantVectors, collection: str, asset_ids: list[str]
) -> list[tuple[bytes, str]]:
    """Reference images downscaled to a sensible longest side, in the order given."""
    images = []
    for asset_id in asset_ids:
        record = scope.get_asset(collection, asset_id)
        if record is None:
            raise NotFound(
                ErrorCode.asset_not_found, f"reference {asset_id} is not in {collection}"
            )
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


def keep_images(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    images: list[ImageBytes],
    request: GenerateRequest,
    references: list[str],
    model: str,
) -> list[contract.GeneratedImage]:
    """Keeps each image with the job (it expires with it) and, when asked, saves them all into
    the collection with their lineage."""
    lineage = {"prompt": request.prompt, "references": references, "model": model, "job_id": job_id}
    entries: list[contract.GeneratedImage] = []
    for number, image in enumerate(images):
        key = generated_key(job_id, number)
        ctx.blobs.put(key, image.data)
        # The job record expires job_ttl after it finishes; its images go a minute after it.
        ctx.expiry.schedule(key, ctx.settings.job_ttl_s + 60)
        info = sniff_image(image.data, ctx.settings.max_image_pixels)
        entries.append(
            contract.GeneratedImage(
                content_url=contract.job_image_url(job_id, number),
                mime_type=info.mime_type,
                width=info.width,
                height=info.height,
            )
        )
    if request.save_to_collection:
        target = ctx.target(scope, request.collection, fresh=True)
        assets = [
            decode_asset(
                ctx,
                image.data,
                f"generated-{job_id}-{number}.{entry.mime_type.split('/')[-1]}",
                f"generated:{job_id}",
                {"generated": True, "lineage": lineage},
                target.model,
            )
            for number, (image, entry) in enumerate(zip(images, entries, strict=True))
        ]
        asset_ids = store_assets(ctx, scope, request.collection, assets, target)
        for entry, asset_id in zip(entries, asset_ids, strict=True):
            entry.asset_id = asset_id
    return entries


def run_generate(ctx: WorkerContext, job_id: str) -> None:
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    scope = ctx.scoped(ctx.jobs.tenant(job_id))
    try:
        references = resolve_references(ctx, scope, request)
        reference_images = load_references(ctx, scope, request.collection, references)
    except CodedError as exc:
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
    result = GenerateResult(
        images=keep_images(ctx, scope, job_id, images, request, references, model),
        text="\n".join(o.text for o in outputs if o.text),
        references=references,
        model=model,
    )
    errors = [
        ItemError(index=i, source=f"variant:{i}", code=e.code, message=str(e)) for i, e in failures
    ]
    progress = Progress(total=request.count, succeeded=len(outputs), failed=len(failures))
    ctx.jobs.complete(job_id, result, progress, errors)


@app.task(name=RUN_GENERATE, base=ContextTask, bind=True, acks_late=True)
def run_generate_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        run_generate(self.ctx, job_id)
