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
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared import contract
from shared.blobs import generated_key, upload_key
from shared.contract import (
    IMAGES_PER_ITEM,
    BrandScore,
    ErrorCode,
    GeneratedItem,
    GenerateItem,
    GenerateRequest,
    GenerateResult,
    ItemError,
    Progress,
    SourceHit,
    Usage,
    UsedSource,
)
from shared.gemini import GenerationError, GenerationOutput, ImageBytes, ReferenceImage
from shared.gemini.pricing import price_per_image
from shared.images import downscale, sniff_image
from shared.tasks import SAVE_GENERATED
from workers.context import WorkerContext
from workers.references import Gathered

log = logging.getLogger("assetrag.generate")
Outcome = GenerationOutput | GenerationError


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


@dataclass
class Made:
    """One Gemini call of an item (or one it could not make): the format asked for, the
    sources it sent, what came back."""

    outcome: Outcome
    aspect_ratio: str | None
    sources: list[UsedSource]
    called: bool = True


async def generate_variants(
    ctx: WorkerContext,
    collection: str,
    item: GenerateItem,
    gathered: Gathered,
    notes: tuple[str, ...] = (),
) -> list[Made]:
    """`count` variants side by side, each failing or succeeding on its own; a variant in
    several formats makes the first, then the others with the first's output as their base
    (and the item's own base left out: the output already carries the edit)."""
    generator = ctx.generator()

    async def call(refs: list[ReferenceImage], ratio: str | None) -> Outcome:
        try:
            return await generator.generate(item.prompt, refs, ratio, item.image_size, notes)
        except GenerationError as exc:
            return exc

    async def variant() -> list[Made]:
        first_ratio, *others = item.formats
        first = await call(gathered.images, first_ratio)
        made = [Made(first, first_ratio, gathered.used)]
        if not others:
            return made
        if isinstance(first, GenerationError):
            failed = GenerationError(
                ErrorCode(first.code),
                f"not made: the {first_ratio} image it follows failed: {first}",
            )
            return made + [Made(failed, ratio, [], called=False) for ratio in others]
        base, used = await asyncio.to_thread(_reformat_base, ctx, collection, first, gathered)
        refs = [base, *(image for image in gathered.images if image.role != "base")]
        rest = await asyncio.gather(*(call(refs, ratio) for ratio in others))
        return made + [Made(o, ratio, used) for o, ratio in zip(rest, others, strict=True)]

    variants = await asyncio.gather(*(variant() for _ in range(item.count)))
    return [made for one in variants for made in one]


def _reformat_base(
    ctx: WorkerContext, collection: str, first: GenerationOutput, gathered: Gathered
) -> tuple[ReferenceImage, list[UsedSource]]:
    """The first format's image as the base of the others, and their sources as used (the
    output named by its asset id, which it has once saved)."""
    image = first.images[0]
    data, mime = downscale(
        image.data, ctx.settings.reference_max_side, ctx.settings.max_image_pixels
    )
    output = UsedSource(
        kind="output",
        role="base",
        label="the same scene in another format",
        hits=[SourceHit(asset_id=hashlib.sha256(image.data).hexdigest(), collection=collection)],
    )
    others = [used for used in gathered.used if used.role != "base"]
    return ReferenceImage(data, mime, role="base", reformat=True), [output, *others]


class KitAttempt(BaseModel):
    """One attempt of an item made with a brand kit, kept until the item settles: what it
    made and, once a query worker scored them, each image's scores."""

    result: GeneratedItem | None = None
    model: str | None = None
    errors: list[ItemError] = []
    saves: list[SaveAsset] = []
    usage: Usage = Usage()
    scores: list[BrandScore] | None = None


class ItemOutcome(BaseModel):
    """What one item came to, as its record keeps it: its result (None when it made no
    image), its errors, the images it hands on to be saved, its Gemini usage. An item made
    with a kit also keeps its attempts, and is `settled` once one passed or none is left."""

    index: int
    result: GeneratedItem | None = None
    model: str | None = None
    errors: list[ItemError] = []
    saves: list[SaveAsset] = []
    usage: Usage = Usage()
    kit_attempts: list[KitAttempt] = []
    settled: bool = True


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
    model: str, item: GenerateItem, attempt: int, made: list[Made], batch: bool
) -> Usage:
    """This attempt's calls and what they returned, plus the calls of the attempts a crash
    lost (made, and assumed billed: one image each)."""
    lost = item.count * len(item.formats) * (attempt - 1)
    returned = sum(len(m.outcome.images) for m in made if isinstance(m.outcome, GenerationOutput))
    billed = returned + lost
    price = price_per_image(model, item.image_size, batch)
    return Usage(
        calls=sum(m.called for m in made) + lost,
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
    made: list[Made],
    model: str,
    offset: int = 0,
) -> Kept:
    """Keeps each image with the job (it expires with it; its key is the same on every
    attempt, so a re-sent item leaves no blob behind) and, when asked, hands it on, with its
    lineage, to be saved into the collection by the embed workers."""
    images = [
        (m, image)
        for m in made
        if isinstance(m.outcome, GenerationOutput)
        for image in m.outcome.images
    ]
    if len(images) > IMAGES_PER_ITEM - offset:
        log.warning(
            "job %s item %d: %d images, keeping %d", job_id, index, len(images), IMAGES_PER_ITEM
        )
        images = images[: IMAGES_PER_ITEM - offset]
    kept = Kept([], [])
    for n, (call, image) in enumerate(images, start=offset):
        number = contract.generated_image_number(index, n)
        entry = _keep_with_job(ctx, job_id, index, number, image)
        entry.aspect_ratio = call.aspect_ratio
        kept.entries.append(entry)
        if request.save_to_collection:
            entry.asset_id = hashlib.sha256(image.data).hexdigest()
            ext = entry.mime_type.split("/")[-1]
            lineage = _lineage(job_id, request, index, item, call, model)
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


def _lineage(
    job_id: str, request: GenerateRequest, index: int, item: GenerateItem, call: Made, model: str
) -> dict[str, Any]:
    """How an image was made, as its asset's metadata keeps it (GET .../lineage reads it)."""
    lineage: dict[str, Any] = {
        "prompt": item.prompt,
        "references": [hit.asset_id for used in call.sources for hit in used.hits],
        "sources": [used.model_dump(exclude_none=True) for used in call.sources],
        "model": model,
        "job_id": job_id,
    }
    if call.aspect_ratio is not None:
        lineage["aspect_ratio"] = call.aspect_ratio
    if request.bulk:
        lineage["item"] = index
    return lineage


def saved_uploads(item: GenerateItem, gathered: Gathered) -> list[SaveAsset]:
    """The uploads an item's sources asked to keep (`save`), as assets of the collection."""
    keep = {s.upload_id for s in item.sources if s.save and s.upload_id is not None}
    return [
        SaveAsset(
            asset_id=used.sha256,
            content_key=upload_key(used.upload_id),
            filename=f"upload-{used.upload_id}",
            source=f"upload:{used.upload_id}",
            metadata={"uploaded": True},
        )
        for used in gathered.used
        if used.upload_id in keep and used.upload_id is not None and used.sha256 is not None
    ]


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
    gathered: Gathered,
    made: list[Made],
    attempt: int = 1,
    offset: int = 0,
) -> ItemOutcome:
    """Keeps an item's images and says what it came to (on its `attempt`); a call's failure
    is an error of the item, which still succeeds when another call made an image."""
    outputs = [m.outcome for m in made if isinstance(m.outcome, GenerationOutput)]
    failures = [
        (v, m.outcome) for v, m in enumerate(made) if isinstance(m.outcome, GenerationError)
    ]
    # The single form counts its calls as its items, as it did before items existed.
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
    done.model = (outputs[0].model if outputs else None) or ctx.settings.gemini_model
    done.usage = item_usage(done.model, item, attempt, made, request.mode == "batch")
    if not outputs:
        return done
    kept = keep_images(ctx, job_id, request, index, item, made, done.model, offset)
    done.saves = kept.saves + saved_uploads(item, gathered)
    done.result = GeneratedItem(
        index=index,
        images=kept.entries,
        text="\n".join(o.text for o in outputs if o.text),
        references=gathered.asset_ids,
        sources=gathered.used,
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
