"""One generated item, whichever way it ran (interactively or in a Gemini batch): its reference
images, its Gemini calls, its images kept with the job, and how its work ends.

No model runs here, so a generate worker never loads torch:
- a reference query is answered before the item runs, on a query worker
  (`workers/generate.py`: `resolve_queries`), and read back here;
- images saved into a collection are stored as originals under their content hash (their
  asset ids are known at once), and their encoding is handed to the embed workers, in one
  batch per piece of work (`SAVE_GENERATED`); the work is counted when they are searchable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from shared import contract, keys
from shared.blobs import asset_key, generated_key
from shared.contract import (
    IMAGES_PER_ITEM,
    ErrorCode,
    GeneratedItem,
    GenerateItem,
    GenerateRequest,
    GenerateResult,
    ItemError,
    Progress,
)
from shared.errors import NotFound
from shared.gemini import GenerationError, GenerationOutput, ImageBytes
from shared.images import downscale, sniff_image
from shared.milvus.tenants import TenantVectors
from shared.tasks import SAVE_GENERATED
from workers.context import WorkerContext

log = logging.getLogger("assetrag.generate")
Outcome = GenerationOutput | GenerationError
RESOLVED_FIELD = "resolved"  # the job record's field holding each item's searched references


class SaveAsset(BaseModel):
    """A generated image to become an asset: its original is stored already, by content hash."""

    asset_id: str
    filename: str
    source: str
    metadata: dict[str, Any]


class Completion(BaseModel):
    """How a piece of work ends once its images are saved: counted as a batch of items, or
    (the single-prompt form) ending the job with its result."""

    succeeded: int = 0
    failed: int = 0
    errors: list[ItemError] = []
    result: GenerateResult | None = None
    progress: Progress | None = None


def needs_search(request: GenerateRequest) -> bool:
    """Whether any item's references are a query (answered on a query worker first)."""
    return any(
        item.references is not None and item.references.query is not None
        for item in request.generations()
    )


def resolved_references(ctx: WorkerContext, job_id: str) -> dict[int, list[str]]:
    """Each item's searched reference ids, as the query worker recorded them."""
    raw = ctx.redis.hget(keys.job(job_id), RESOLVED_FIELD)
    return {int(k): v for k, v in json.loads(raw).items()} if raw else {}


def reference_ids(item: GenerateItem, index: int, resolved: dict[int, list[str]]) -> list[str]:
    """The item's reference asset ids: the named ones, or its query's recorded hits."""
    refs = item.references
    if refs is None:
        return []
    if refs.asset_ids is not None:
        return list(refs.asset_ids)
    return resolved.get(index, [])


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
    """What one item came to: its result (None when it made no image), its errors, and the
    images it hands on to be saved into the collection."""

    index: int
    result: GeneratedItem | None = None
    model: str | None = None
    errors: list[ItemError] = field(default_factory=list)
    saves: list[SaveAsset] = field(default_factory=list)


@dataclass
class Kept:
    entries: list[contract.GeneratedImage]
    saves: list[SaveAsset]


def keep_images(
    ctx: WorkerContext,
    job_id: str,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    images: list[ImageBytes],
    references: list[str],
    model: str,
) -> Kept:
    """Keeps each image with the job (it expires with it) and, when asked, stores its
    original for the collection, with its lineage, to be saved by the embed workers."""
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
    kept = Kept([], [])
    for n, image in enumerate(images):
        number = contract.generated_image_number(index, n)
        entry = _keep_with_job(ctx, job_id, index, number, image)
        kept.entries.append(entry)
        if request.save_to_collection:
            entry.asset_id = _store_original(ctx, image.data)
            ext = entry.mime_type.split("/")[-1]
            kept.saves.append(
                SaveAsset(
                    asset_id=entry.asset_id,
                    filename=f"generated-{job_id}-{number}.{ext}",
                    source=f"generated:{job_id}",
                    metadata={**item.metadata, "generated": True, "lineage": lineage},
                )
            )
    return kept


def _keep_with_job(
    ctx: WorkerContext, job_id: str, index: int, number: int, image: ImageBytes
) -> contract.GeneratedImage:
    key = generated_key(job_id, number)
    ctx.blobs.put(key, image.data)
    # The job record expires job_ttl after it finishes; its images go a minute after it.
    ctx.expiry.schedule(key, ctx.settings.job_ttl_s + 60)
    info = sniff_image(image.data, ctx.settings.max_image_pixels)
    return contract.GeneratedImage(
        content_url=contract.job_image_url(job_id, number),
        mime_type=info.mime_type,
        width=info.width,
        height=info.height,
        item=index,
    )


def _store_original(ctx: WorkerContext, data: bytes) -> str:
    """The image's original under its content hash (its asset id), once."""
    asset_id = hashlib.sha256(data).hexdigest()
    key = asset_key(asset_id)
    if not ctx.blobs.exists(key):
        ctx.blobs.put(key, data)
    return asset_id


def settle_item(
    ctx: WorkerContext,
    job_id: str,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    references: list[str],
    outcomes: list[Outcome],
) -> ItemOutcome:
    """Keeps an item's images and says what it came to; a variant's failure is an error of
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
    kept = keep_images(ctx, job_id, request, index, item, images, references, done.model)
    done.saves = kept.saves
    done.result = GeneratedItem(
        index=index,
        images=kept.entries,
        text="\n".join(o.text for o in outputs if o.text),
        references=references,
        metadata=item.metadata,
    )
    return done


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


def report(ctx: WorkerContext, job_id: str, work_id: str, outcomes: list[ItemOutcome]) -> int:
    """Keeps each item's result, then counts the work once (after its images are saved, when
    there are any to save); returns how many items made an image."""
    for outcome in outcomes:
        if outcome.result is not None:
            ctx.jobs.put_item(job_id, outcome.index, outcome.result)
    succeeded = sum(o.result is not None for o in outcomes)
    completion = Completion(
        succeeded=succeeded,
        failed=len(outcomes) - succeeded,
        errors=[e for o in outcomes for e in o.errors],
    )
    end_work(ctx, job_id, work_id, [s for o in outcomes for s in o.saves], completion)
    return succeeded


def end_work(
    ctx: WorkerContext,
    job_id: str,
    work_id: str,
    saves: list[SaveAsset],
    completion: Completion,
) -> None:
    """Ends a piece of generate work now, or hands it to the embed workers, which save its
    images and then end it the same way (`complete_saved`)."""
    if not saves:
        complete(ctx, job_id, work_id, completion)
        return
    save_id = f"{work_id}:save"
    task = ctx.queue.message(
        SAVE_GENERATED,
        job_id,
        save_id,
        [s.model_dump(mode="json") for s in saves],
        completion.model_dump(mode="json"),
    )
    ctx.jobs.hand_over(job_id, work_id, save_id, task)


def complete(ctx: WorkerContext, job_id: str, work_id: str, completion: Completion) -> None:
    if completion.result is not None:
        ctx.jobs.complete(job_id, completion.result, completion.progress, completion.errors)
        return
    ctx.jobs.complete_batch(
        job_id, work_id, completion.succeeded, completion.errors, {}, failed=completion.failed
    )
