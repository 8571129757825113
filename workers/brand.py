"""Generations with a brand kit: the kit's references go in as style sources and its style as a
note before the prompt; each attempt's images are scored on a query worker (where CLIP runs),
and an item that falls short is made again, with what it missed said, up to the kit's
`attempts`. The item keeps its best attempt.

A piece of generate work (a group of items, or the single form) goes back and forth: its
items run on a generate worker (`GENERATE_ITEMS`), which hands the work to `SCORE_BRAND` on
the query queue while any kit item waits to be scored; the scorer sends the items to try
again back as `GENERATE_ITEMS` (work `<group>:k<hop>`), or ends the work when every item has
settled. The generate workers make other items meanwhile. Each attempt is recorded before the
work moves on, so a redelivered hop neither calls Gemini again nor scores twice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared.contract import (
    BrandScore,
    ErrorCode,
    GenerateItem,
    GenerateRequest,
    Kit,
    ReferenceSource,
)
from shared.errors import CodedError, NotFound
from shared.milvus.tenants import TenantVectors
from shared.tasks import GENERATE_ITEMS, SCORE_BRAND
from workers.assets import decode_asset
from workers.context import WorkerContext
from workers.generation import (
    ItemOutcome,
    KitAttempt,
    generate_variants,
    keep_outcome,
    settle_item,
    summed,
)
from workers.palette import palette_distance
from workers.references import Found, gather


def kit_source(kit: Kit) -> ReferenceSource:
    """The kit's references, as the style sources sent with every generation made with it."""
    return ReferenceSource(
        asset_ids=kit.references,
        collection=kit.collection,
        role="style",
        label=f"the {kit.name} brand",
    )


def kit_notes(kit: Kit, missed: str | None) -> tuple[str, ...]:
    """The service's words before the prompt: the kit's style and palette, and what the last
    attempt missed."""
    notes = []
    rules = [f"Brand {kit.name}: follow its style references."]
    if kit.style:
        rules.append(kit.style)
    if kit.palette:
        rules.append(f"Use the brand palette: {', '.join(kit.palette)}.")
    notes.append(" ".join(rules))
    if missed:
        notes.append(missed)
    return tuple(notes)


def shortfall(kit: Kit, scores: list[BrandScore]) -> str:
    """What the last attempt missed, in words for the next prompt."""
    checks = kit.checks
    said = []
    similarity = min((s.similarity for s in scores if s.similarity is not None), default=None)
    distance = max(
        (s.palette_distance for s in scores if s.palette_distance is not None), default=None
    )
    wanted = checks.min_similarity
    if wanted is not None and similarity is not None and similarity < wanted:
        said.append(
            f"its likeness to the brand's style references was {similarity:.2f} (at least "
            f"{wanted:.2f} is wanted): stay closer to them"
        )
    limit = checks.max_palette_distance
    if limit is not None and distance is not None and distance > limit:
        said.append(
            f"its colours were {distance:.1f} (CIEDE2000) from the palette (at most "
            f"{limit:.1f} is wanted): use only the palette's colours"
        )
    return "The last attempt fell short of the brand: " + "; ".join(said) + "."


def run_kit_item(
    ctx: WorkerContext,
    scope: TenantVectors,
    job_id: str,
    request: GenerateRequest,
    index: int,
    found: Found,
) -> ItemOutcome:
    """On a generate worker: the item's next attempt with its kit (none when it has settled,
    or its last attempt still waits to be scored), recorded before the work moves on."""
    item = request.generations()[index]
    raw = ctx.jobs.claims.recorded(job_id, [index]).get(index)
    record = ItemOutcome.model_validate_json(raw) if raw else ItemOutcome(index=index)
    if raw is None:
        record.settled = False
    if record.settled or (record.kit_attempts and record.kit_attempts[-1].scores is None):
        return record
    kit = _kit(ctx, scope.tenant, item)
    missed = shortfall(kit, record.kit_attempts[-1].scores or []) if record.kit_attempts else None
    with_kit = item.model_copy(update={"references": [*item.sources, kit_source(kit)]})
    try:
        gathered = gather(ctx, scope, request, index, with_kit, found)
    except CodedError as exc:
        record.settled, record.errors = True, [exc.item_error(index, f"item:{index}")]
        keep_outcome(ctx, job_id, record)
        return record
    notes = kit_notes(kit, missed)
    made = ctx.run_async(generate_variants(ctx, request.collection, item, gathered, notes))
    offset = len(record.kit_attempts) * item.count * len(item.formats)
    done = settle_item(ctx, job_id, request, index, with_kit, gathered, made, offset=offset)
    record.kit_attempts.append(
        KitAttempt(
            result=done.result,
            model=done.model,
            errors=done.errors,
            saves=done.saves,
            usage=done.usage,
        )
    )
    record.usage = summed([record.usage, done.usage])
    if done.result is None:  # Gemini made nothing to score
        settle(kit, record)
    keep_outcome(ctx, job_id, record)
    return record


# ── scoring, where CLIP runs ────────────────────────────────────────────────────────────────


class Scorer:
    """Scores images against one kit: its references' mean embedding (by the model of the
    kit's collection), read once."""

    def __init__(self, ctx: WorkerContext, scope: TenantVectors, kit: Kit) -> None:
        self.ctx, self.kit = ctx, kit
        target = ctx.target(scope, kit.collection)
        self.model = target.model
        found = scope.get_vectors(kit.collection, kit.references, target.version)
        vectors = np.asarray([found[a] for a in kit.references if a in found], dtype=np.float32)
        if not len(vectors):
            raise NotFound(
                ErrorCode.asset_not_found,
                f"none of kit {kit.ref}'s references is in {kit.collection} any more",
            )
        mean = vectors.mean(axis=0)
        self.centroid = mean / np.linalg.norm(mean)

    def similarity_of(self, vector: np.ndarray) -> float:
        unit = np.asarray(vector, dtype=np.float32)
        return float(unit @ self.centroid / np.linalg.norm(unit))

    def embed(self, data: bytes) -> np.ndarray:
        asset = decode_asset(self.ctx, data, "scored", "brand", {}, self.model)
        return np.asarray(self.ctx.encoder(self.model).encode_images([asset.pixels])[0])

    def score(self, data: bytes, vector: np.ndarray | None = None) -> BrandScore:
        """Both scores; `vector` when the image's embedding by the kit's model is known."""
        similarity = self.similarity_of(self.embed(data) if vector is None else vector)
        distance = palette_distance(data, self.kit.palette) if self.kit.palette else None
        return BrandScore(
            kit=self.kit.ref,
            similarity=round(similarity, 6),
            palette_distance=None if distance is None else round(distance, 4),
            passed=self.passes(similarity, distance),
        )

    def passes(self, similarity: float, distance: float | None) -> bool:
        checks = self.kit.checks
        if checks.min_similarity is not None and similarity < checks.min_similarity:
            return False
        return not (
            checks.max_palette_distance is not None
            and distance is not None
            and distance > checks.max_palette_distance
        )


def image_number(content_url: str) -> int:
    return int(content_url.rsplit("/", 1)[-1])


def waiting(outcome: ItemOutcome) -> bool:
    """An item whose last attempt waits to be scored."""
    return not outcome.settled and bool(outcome.kit_attempts)


def score_attempt(ctx: WorkerContext, scorer: Scorer, job_id: str, attempt: KitAttempt) -> None:
    from shared.blobs import generated_key

    images = attempt.result.images if attempt.result is not None else []
    attempt.scores = [
        scorer.score(ctx.blobs.get(generated_key(job_id, image_number(image.content_url))))
        for image in images
    ]


def settle(kit: Kit, record: ItemOutcome) -> None:
    """The item keeps its best attempt (one that passed, else the highest likeness, then the
    closest colours), with its scores; the other attempts' images are left to expire."""
    scored = [a for a in record.kit_attempts if a.result is not None and a.scores]
    record.settled = True
    if not scored:
        last = record.kit_attempts[-1]
        record.result, record.errors, record.model = None, last.errors, last.model
        return
    best = max(scored, key=_quality)
    passed = all(s.passed for s in best.scores or [])
    summary = _summary(kit, best, passed, len(record.kit_attempts))
    assert best.result is not None
    best.result.brand = summary
    for image, score in zip(best.result.images, best.scores or [], strict=True):
        image.brand = score.model_copy(update={"attempts": summary.attempts})
    for save in best.saves:
        lineage = save.metadata.get("lineage")
        if isinstance(lineage, dict):
            lineage["kit"] = kit.ref
            lineage["brand"] = summary.model_dump(exclude_none=True)
    best.result.usage = record.usage
    record.result, record.saves, record.errors, record.model = (
        best.result,
        best.saves,
        best.errors,
        best.model,
    )


def _quality(attempt: KitAttempt) -> tuple[bool, float, float]:
    scores = attempt.scores or []
    similarity = min((s.similarity or 0.0 for s in scores), default=0.0)
    distance = max((s.palette_distance or 0.0 for s in scores), default=0.0)
    return all(s.passed for s in scores), similarity, -distance


def _summary(kit: Kit, best: KitAttempt, passed: bool, attempts: int) -> BrandScore:
    scores = best.scores or []
    similarities = [s.similarity for s in scores if s.similarity is not None]
    distances = [s.palette_distance for s in scores if s.palette_distance is not None]
    return BrandScore(
        kit=kit.ref,
        similarity=min(similarities) if similarities else None,
        palette_distance=max(distances) if distances else None,
        passed=passed,
        attempts=attempts,
        code=None if passed else "off_brand",
    )


def needs_another(kit: Kit, record: ItemOutcome) -> bool:
    last = record.kit_attempts[-1]
    if last.result is None:  # Gemini made nothing: not a brand question, no retry
        return False
    passed = all(s.passed for s in last.scores or [])
    return not passed and len(record.kit_attempts) < kit.checks.attempts


# ── the hops ────────────────────────────────────────────────────────────────────────────────


def to_scoring(
    ctx: WorkerContext, job_id: str, work_id: str, indices: list[int], waiting_for: list[int]
) -> None:
    """Hands the work to a query worker to score the items waiting."""
    hop = _hop(work_id) + 1
    next_id = f"{_group(work_id)}:s{hop}"
    task = ctx.queue.message(SCORE_BRAND, job_id, next_id, indices, waiting_for)
    ctx.jobs.hand_over(job_id, work_id, next_id, task)


def score_items(
    ctx: WorkerContext,
    job_id: str,
    work_id: str,
    indices: list[int],
    waiting_for: list[int],
    finish: Callable[[WorkerContext, str, str, GenerateRequest, list[ItemOutcome]], None],
) -> None:
    """On a query worker: the waiting items' last attempts scored; each settles or goes back
    to be made again; when none goes back, the work ends (`finish`)."""
    if not ctx.jobs.start_work(job_id, work_id, ctx.name):
        return
    request, tenant = ctx.jobs.submitted(job_id, GenerateRequest)
    scope = ctx.scoped(tenant)
    generations = request.generations()
    scorers: dict[str, Scorer] = {}
    again = []
    for index, raw in sorted(ctx.jobs.claims.recorded(job_id, waiting_for).items()):
        record = ItemOutcome.model_validate_json(raw)
        if not waiting(record):
            continue
        kit = _kit(ctx, tenant, generations[index])
        scorer = scorers.setdefault(kit.ref, Scorer(ctx, scope, kit))
        if record.kit_attempts[-1].scores is None:
            score_attempt(ctx, scorer, job_id, record.kit_attempts[-1])
        if needs_another(kit, record):
            again.append(index)
        else:
            settle(kit, record)
        keep_outcome(ctx, job_id, record)
    if again:
        next_id = f"{_group(work_id)}:k{_hop(work_id) + 1}"
        task = ctx.queue.message(GENERATE_ITEMS, job_id, next_id, indices, again)
        ctx.jobs.hand_over(job_id, work_id, next_id, task)
        return
    recorded = ctx.jobs.claims.recorded(job_id, indices)
    outcomes = [ItemOutcome.model_validate_json(recorded[i]) for i in indices if i in recorded]
    finish(ctx, job_id, work_id, request, outcomes)


def _kit(ctx: WorkerContext, tenant: str | None, item: GenerateItem) -> Kit:
    assert item.kit is not None
    return ctx.kits.get(tenant, item.kit)


def _group(work_id: str) -> str:
    return work_id.split(":", 1)[0]


def _hop(work_id: str) -> int:
    tail = work_id.rsplit(":", 1)[-1] if ":" in work_id else ""
    return int(tail[1:]) if tail[:1] in ("s", "k") and tail[1:].isdigit() else 0
