"""One generated item, whichever way it ran (interactively or in a Gemini batch): its reference
images, its Gemini calls, its images kept with the job, and how its work ends.

No model runs here, so a generate worker never loads torch:
- a reference query is answered before the item runs, on a query worker
  (`workers/generate.py`: `resolve_queries`), and read back here;
- images saved into a collection are kept with the job under deterministic keys, their
  asset ids (content hashes) known at once, and their encoding is handed to the embed
  workers, in one batch per piece of work (`SAVE_GENERATED`), which store the originals; the
  work is counted when they are searchable.

Paid once: each item is claimed (its attempt number) before it calls Gemini and recorded
(shared/jobs/claims.py) before its task is acknowledged, so a redelivered task re-sends only
the items whose answers a crash lost, and their records say `attempts: 2`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared import contract, keys
from shared.blobs import generated_key
from shared.contract import (
    IMAGES_PER_ITEM,
    ErrorCode,
    GeneratedItem,
    GenerateItem,
    GenerateRequest,
    GenerateResult,
    ItemError,
    Progress,
    Usage,
)
from shared.errors import NotFound
from shared.gemini import GenerationError, GenerationOutput, ImageBytes
from shared.gemini.pricing import price_per_image
from shared.images import downscale, sniff_image
from shared.milvus.tenants import TenantVectors
from shared.tasks import SAVE_GENERATED
from workers.context import WorkerContext

log = logging.getLogger("assetrag.generate")
Outcome = GenerationOutput | GenerationError
RESOLVED_FIELD = "resolved"  # the job record's field holding each item's searched references


class SaveAsset(BaseModel):
    """A generated image to become an asset: kept with the job at `content_key`, its asset id
    the hash of those bytes."""

    asset_id: str
    content_key: str
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


class ItemOutcome(BaseModel):
    """What one item came to, as its record keeps it: its result (None when it made no
    image), its errors, the images it hands on to be saved, its Gemini usage."""

    index: int
    result: GeneratedItem | None = None
    model: str | None = None
    errors: list[ItemError] = []
    saves: list[SaveAsset] = []
    usage: Usage = Usage()


def run_once(
    ctx: WorkerContext, job_id: str, index: int, call: Callable[[int], ItemOutcome]
) -> ItemOutcome:
    """The item's recorded outcome; or, when none is recorded, the item claimed for another
    attempt, `call(attempt)` run (it calls Gemini) and what it came to recorded."""
    recorded = ctx.jobs.claims.recorded(job_id, [index]).get(index)
    if recorded is not None:
        return ItemOutcome.model_validate_json(recorded)
    outcome = call(ctx.jobs.claims.claim(job_id, index))
    keep_outcome(ctx, job_id, outcome)
    return outcome


def keep_outcome(ctx: WorkerContext, job_id: str, outcome: ItemOutcome) -> None:
    ctx.jobs.claims.record(job_id, outcome.index, outcome.model_dump_json())


def item_usage(
    model: str, item: GenerateItem, attempt: int, returned: int, batch: bool
) -> Usage:
    """This attempt's `count` calls and what they returned, plus the calls of the attempts a
    crash lost (made, and assumed billed: one image each)."""
    lost = item.count * (attempt - 1)
    billed = returned + lost
    price = price_per_image(model, item.image_size, batch)
    return Usage(
        calls=item.count * attempt,
        images_returned=returned,
        images_billed=billed,
        estimated_cost_usd=None if price is None else round(billed * price, 6),
    )


def summed(usages: Iterable[Usage]) -> Usage:
    """Items' usage added up: a job's."""
    total = Usage()
    for usage in usages:
        total = total.plus(usage)
    return total


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
    """Keeps each image with the job (it expires with it; its key is the same on every
    attempt, so a re-sent item leaves no blob behind) and, when asked, hands it on, with its
    lineage, to be saved into the collection by the embed workers."""
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
            entry.asset_id = hashlib.sha256(image.data).hexdigest()
            ext = entry.mime_type.split("/")[-1]
            kept.saves.append(
                SaveAsset(
                    asset_id=entry.asset_id,
                    content_key=generated_key(job_id, number),
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


def settle_item(
    ctx: WorkerContext,
    job_id: str,
    request: GenerateRequest,
    index: int,
    item: GenerateItem,
    references: list[str],
    outcomes: list[Outcome],
    attempt: int = 1,
) -> ItemOutcome:
    """Keeps an item's images and says what it came to (on its `attempt`); a variant's failure
    is an error of the item, which still succeeds when another variant made an image."""
    outputs = [o for o in outcomes if isinstance(o, GenerationOutput)]
    failures = [(v, o) for v, o in enumerate(outcomes) if isinstance(o, GenerationError)]
    # The single form counts its variants as its items, as it did before items existed.
    done = ItemOutcome(index=index)
    done.errors = [
        ItemError(
            index=index if request.bulk else v,
            source=f"item:{index}:variant:{v}" if request.bulk else f"variant:{v}",
            code=e.code,
            message=str(e),
        )
        for v, e in failures
    ]
    images = [image for output in outputs for image in output.images]
    model = outputs[0].model if outputs else None
    done.model = model or ctx.settings.gemini_model
    done.usage = item_usage(done.model, item, attempt, len(images), request.mode == "batch")
    if not outputs:
        return done
    kept = keep_images(ctx, job_id, request, index, item, images, references, done.model)
    done.saves = kept.saves
    done.result = GeneratedItem(
        index=index,
        images=kept.entries,
        text="\n".join(o.text for o in outputs if o.text),
        references=references,
        metadata=item.metadata,
        attempts=attempt,
        usage=done.usage,
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
    """Counts the work once (after its images are saved, when there are any to save); its
    items were recorded as each ended. Returns how many items made an image."""
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
