"""Generate jobs: references (named or retrieved) plus a prompt → Gemini → images, saved back
with their lineage when asked.

A single-prompt job runs as one task. A job with `items` is planned into groups of items
(`ASSETRAG_GENERATE_BATCH_SIZE`), each a task on the generate queue whose items run side by
side; each item's result is kept in Redis as it lands, and a last step on the default queue
assembles the job's result. In batch mode the items go to Gemini's Batch API instead
(workers/generate_batch.py); its answers take the same road back.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shared import contract
from shared.blobs import generated_key
from shared.contract import (
    IMAGES_PER_ITEM,
    AssetReferences,
    ErrorCode,
    GeneratedItem,
    GenerateItem,
    GenerateRequest,
    GenerateResult,
    ItemError,
    Progress,
)
from shared.errors import CodedError, NotFound
from shared.gemini import GenerationError, GenerationOutput, ImageBytes
from shared.images import downscale, sniff_image
from shared.jobs.records import START, THEN
from shared.milvus.gateway import TenantVectors
from shared.tasks import FINISH_GENERATE, GENERATE_ITEMS, RUN_GENERATE
from workers.assets import decode_asset, store_assets
from workers.celery_app import app
from workers.context import ContextTask, WorkerContext

log = logging.getLogger("assetrag.generate")
Outcome = GenerationOutput | GenerationError


def resolve_references(
    ctx: WorkerContext, scope: TenantVectors, collection: str, refs: AssetReferences | None
) -> list[str]:
    """The reference asset ids: the named ones, or the top hits of the reference query."""
    if refs is None:
        return []
    if refs.asset_ids is not None:
        return list(refs.asset_ids)
    target = ctx.target(scope, collection)
    vector = ctx.texts(target.model).encode([str(refs.query)])
    hits = scope.search(collection, vector, refs.top_k, version=target.version)[0]
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
    ctx: WorkerContext, item: GenerateItem, references: list[tuple[bytes, str]]
) -> list[Outcome]:
    """`count` calls side by side; each variant succeeds or fails on its own."""
    generator = ctx.generator()
    calls = [
        generator.generate(item.prompt, references, item.aspect_ratio, item.image_size)
        for _ in range(item.count)
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if not isinstance(outcome, GenerationOutput | GenerationError):
            raise outcome  # a bug, not an upstream answer
    return outcomes  # type: ignore[return-value]


@dataclass
class ItemOutcome:
    """What one item came to: its result (None when it made no image) and its errors."""

    index: int
    result: GeneratedItem | None = None
    model: str | None = None
    errors: list[ItemError] = field(default_factory=list)


def keep_images(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    images: list[ImageBytes],
    references: list[str],
    model: str,
) -> list[contract.GeneratedImage]:
    """Keeps each image with the job (it expires with it) and, when asked, saves them all into
    the collection with their lineage."""
    if len(images) > IMAGES_PER_ITEM:
        log.warning(
            "job %s item %d: %d images, keeping %d", job_id, index, len(images), IMAGES_PER_ITEM
        )
        images = images[:IMAGES_PER_ITEM]
    lineage: dict[str, object] = {
        "prompt": item.prompt,
        "references": references,
        "model": model,
        "job_id": job_id,
    }
    if request.bulk:
        lineage["item"] = index
    entries: list[contract.GeneratedImage] = []
    numbers = [contract.generated_image_number(index, n) for n in range(len(images))]
    for number, image in zip(numbers, images, strict=True):
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
                item=index,
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
                {**item.metadata, "generated": True, "lineage": lineage},
                target.model,
            )
            for number, image, entry in zip(numbers, images, entries, strict=True)
        ]
        asset_ids = store_assets(ctx, scope, request.collection, assets, target)
        for entry, asset_id in zip(entries, asset_ids, strict=True):
            entry.asset_id = asset_id
    return entries


def settle_item(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    references: list[str],
    outcomes: list[Outcome],
) -> ItemOutcome:
    """Stores an item's images and says what it came to; a variant's failure is an error of
    the item, which still succeeds when another variant made an image."""
    outputs = [o for o in outcomes if isinstance(o, GenerationOutput)]
    failures = [(v, o) for v, o in enumerate(outcomes) if isinstance(o, GenerationError)]
    # The single form counts its variants as its items, as it did before items existed.
    done = ItemOutcome(index)
    done.errors = [
        ItemError(
            index=index if request.bulk else v,
            source=f"item:{index}:variant:{v}" if request.bulk else f"variant:{v}",
            code=e.code,
            message=str(e),
        )
        for v, e in failures
    ]
    if not outputs:
        return done
    done.model = outputs[0].model or ctx.settings.gemini_model
    images = [image for output in outputs for image in output.images]
    done.result = GeneratedItem(
        index=index,
        images=keep_images(
            ctx, scope, job_id, request, index, item, images, references, done.model
        ),
        text="\n".join(o.text for o in outputs if o.text),
        references=references,
        metadata=item.metadata,
    )
    return done


def run_item(
    ctx: WorkerContext, scope: TenantVectors, job_id: str, request: GenerateRequest, index: int
) -> ItemOutcome:
    """One item, interactively: references → `count` Gemini calls → stored images."""
    item = request.generations()[index]
    try:
        references = resolve_references(ctx, scope, request.collection, item.references)
        reference_images = load_references(ctx, scope, request.collection, references)
    except CodedError as exc:
        return ItemOutcome(index, errors=[exc.item_error(index, f"item:{index}")])
    outcomes = ctx.run_async(generate_variants(ctx, item, reference_images))
    return settle_item(ctx, scope, job_id, request, index, item, references, outcomes)


# ── the tasks' bodies ───────────────────────────────────────────────────────────────────────


def run_generate(ctx: WorkerContext, job_id: str) -> None:
    """A job's first task: a single prompt runs here; items are planned (or batched)."""
    if not ctx.jobs.start_work(job_id, START, ctx.name):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    if request.mode == "batch":
        from workers.generate_batch import submit_batch

        submit_batch(ctx, job_id, request)
    elif request.bulk:
        plan_items(ctx, job_id, request)
    else:
        run_single(ctx, job_id, request)


def run_single(ctx: WorkerContext, job_id: str, request: GenerateRequest) -> None:
    """The single-prompt form: its variants are the job's items; all failing fails the job."""
    scope = ctx.scoped(ctx.jobs.tenant(job_id))
    item = request.generations()[0]
    try:
        references = resolve_references(ctx, scope, request.collection, item.references)
        reference_images = load_references(ctx, scope, request.collection, references)
    except CodedError as exc:
        ctx.jobs.fail(job_id, exc.code, exc.message)
        return
    outcomes = ctx.run_async(generate_variants(ctx, item, reference_images))
    done = settle_item(ctx, scope, job_id, request, 0, item, references, outcomes)
    if done.result is None:
        first = next(o for o in outcomes if isinstance(o, GenerationError))
        ctx.jobs.fail(job_id, first.code, str(first))
        return
    failed = len(done.errors)
    result = GenerateResult(
        images=done.result.images,
        text=done.result.text,
        references=references,
        model=done.model or ctx.settings.gemini_model,
    )
    progress = Progress(total=item.count, succeeded=item.count - failed, failed=failed)
    ctx.jobs.put_item(job_id, 0, done.result)
    ctx.jobs.complete(job_id, result, progress, done.errors)


def first_result(ctx: WorkerContext, request: GenerateRequest) -> GenerateResult:
    """What a bulk job shows until its last step writes the whole result."""
    return GenerateResult(
        images=[],
        text="",
        references=[],
        model=ctx.settings.gemini_model,
        mode=request.mode,
        items=[],
    )


def plan_items(ctx: WorkerContext, job_id: str, request: GenerateRequest) -> int:
    """Groups of items as tasks on the generate queue; the last step assembles the result."""
    total = len(request.generations())
    size = ctx.settings.generate_batch_size
    batches = [
        (f"g{start // size}", list(range(start, min(start + size, total))))
        for start in range(0, total, size)
    ]
    tasks = [
        (batch_id, ctx.queue.message(GENERATE_ITEMS, job_id, batch_id, indices))
        for batch_id, indices in batches
    ]
    then = ctx.queue.message(FINISH_GENERATE, job_id)
    planned = ctx.jobs.plan(job_id, total, tasks, first_result(ctx, request), then=then)
    return len(tasks) if planned else 0


def generate_items(ctx: WorkerContext, job_id: str, batch_id: str, indices: list[int]) -> int:
    """A group of items side by side; returns how many made an image."""
    if not ctx.jobs.start_work(job_id, batch_id, ctx.name):
        return 0
    request, tenant = ctx.jobs.submitted(job_id, GenerateRequest)
    scope = ctx.scoped(tenant)
    # Threads, not the event loop, for the Milvus and blob calls around each item's Gemini
    # calls (those run on the process's one loop, however many threads wait on them).
    with ThreadPoolExecutor(len(indices), thread_name_prefix="generate-item") as pool:
        outcomes = list(pool.map(lambda i: _guarded(ctx, scope, job_id, request, i), indices))
    return report(ctx, job_id, batch_id, outcomes)


def _guarded(
    ctx: WorkerContext, scope: TenantVectors, job_id: str, request: GenerateRequest, index: int
) -> ItemOutcome:
    try:
        return run_item(ctx, scope, job_id, request, index)
    except CodedError as exc:
        return ItemOutcome(index, errors=[exc.item_error(index, f"item:{index}")])


def report(ctx: WorkerContext, job_id: str, work_id: str, outcomes: list[ItemOutcome]) -> int:
    """Keeps each item's result, then counts the work once."""
    for outcome in outcomes:
        if outcome.result is not None:
            ctx.jobs.put_item(job_id, outcome.index, outcome.result)
    succeeded = sum(o.result is not None for o in outcomes)
    errors = [e for o in outcomes for e in o.errors]
    ctx.jobs.complete_batch(
        job_id, work_id, succeeded, errors, {}, failed=len(outcomes) - succeeded
    )
    return succeeded


def finish_generate(ctx: WorkerContext, job_id: str) -> None:
    """A bulk job's last step: every item's result, in item order, as the job's result."""
    if not ctx.jobs.start_work(job_id, THEN, ctx.name):
        return
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    items = [GeneratedItem.model_validate(raw) for _, raw in sorted(ctx.jobs.items(job_id).items())]
    batch = ctx.jobs.ledger.info(job_id) if request.mode == "batch" else {}
    result = GenerateResult(
        images=[image for item in items for image in item.images],
        text="",
        references=list(dict.fromkeys(r for item in items for r in item.references)),
        model=ctx.settings.gemini_model,
        mode=request.mode,
        items=items,
        batch=batch.get("name"),
        batch_state=batch.get("state"),
    )
    ctx.jobs.complete(job_id, result)


@app.task(name=RUN_GENERATE, base=ContextTask, bind=True, acks_late=True)
def run_generate_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        run_generate(self.ctx, job_id)


@app.task(name=GENERATE_ITEMS, base=ContextTask, bind=True, acks_late=True)
def generate_items_task(self: ContextTask, job_id: str, batch_id: str, indices: list[int]) -> None:
    with self.ctx.failing_job(job_id):
        generate_items(self.ctx, job_id, batch_id, indices)


@app.task(name=FINISH_GENERATE, base=ContextTask, bind=True, acks_late=True)
def finish_generate_task(self: ContextTask, job_id: str) -> None:
    with self.ctx.failing_job(job_id):
        finish_generate(self.ctx, job_id)
