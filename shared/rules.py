"""Rules the API checks at submit and the workers check again when they act: one function
each, so both sides always agree. Each raises a CodedError."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.contract import (
    IMAGES_PER_ITEM,
    MAX_REFERENCES,
    CollectionInfo,
    ErrorCode,
    GenerateItem,
    Kit,
)
from shared.errors import CodedError, Conflict


def check_model(info: CollectionInfo | None, model: str, dimension: int | None = None) -> None:
    """A collection only ever holds vectors of the model it was made with."""
    if info is None:
        return
    if info.model != model or (dimension is not None and info.dimension != dimension):
        made_with = f"{model} ({dimension}-d)" if dimension is not None else model
        raise Conflict(
            ErrorCode.model_mismatch,
            f"collection {info.name} holds {info.model} ({info.dimension}-d) embeddings, "
            f"not {made_with}",
        )


def check_item_count(count: int, limit: int) -> None:
    if count > limit:
        raise CodedError(ErrorCode.too_many_items, f"{count} items; the limit is {limit}")


def check_text(text: str | None, limit: int, code: ErrorCode, what: str) -> None:
    if text is not None and len(text) > limit:
        raise CodedError(code, f"the {what} is {len(text)} characters; the limit is {limit}")


def check_model_allowed(model: str, allowed: list[str]) -> None:
    """A re-index loads the model on the workers: only models the operator allows."""
    if model not in allowed:
        raise CodedError(
            ErrorCode.model_not_allowed,
            f"model {model!r} is not offered here; choose one of {', '.join(allowed)} "
            "(ASSETRAG_CLIP_MODELS adds more)",
        )


# ── generation: what each image model takes ─────────────────────────────────────────────────

_STANDARD_RATIOS = frozenset(
    {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
)


@dataclass(frozen=True)
class ModelCapabilities:
    max_references: int
    image_sizes: frozenset[str]  # empty: the model takes no image_size (one fixed size)
    aspect_ratios: frozenset[str]
    # how many of the references may be people or characters kept consistent (`subject`
    # images count here); None where the model's documentation states no such limit
    max_subjects: int | None = None


# From Google's model pages (checked November 2026): 3.1 Flash Image ("Nano Banana 2") takes
# up to 14 references (up to 10 objects and up to 4 characters kept consistent), 512 to 4K and
# the extra-tall and extra-wide ratios; 3 Pro Image takes 14 references (up to 6 objects, up to
# 5 people) at 1K to 4K with the ten standard ratios; 2.5 Flash Image works best with up to 3
# references and makes one size.
MODEL_CAPABILITIES: dict[str, ModelCapabilities] = {
    "gemini-3.1-flash-image": ModelCapabilities(
        14,
        frozenset({"512", "1K", "2K", "4K"}),
        _STANDARD_RATIOS | {"1:4", "4:1", "1:8", "8:1"},
        max_subjects=4,
    ),
    "gemini-3-pro-image": ModelCapabilities(
        14, frozenset({"1K", "2K", "4K"}), _STANDARD_RATIOS, max_subjects=5
    ),
    "gemini-2.5-flash-image": ModelCapabilities(3, frozenset(), _STANDARD_RATIOS),
}


def capabilities(model: str) -> ModelCapabilities | None:
    """The table's row for a model name, its -preview and dated variants included; None for
    a model the table does not know (then only the contract's bounds apply)."""
    for name in sorted(MODEL_CAPABILITIES, key=len, reverse=True):
        if model == name or model.startswith(f"{name}-"):
            return MODEL_CAPABILITIES[name]
    return None


def check_generation(
    model: str,
    aspect_ratio: str | None,
    image_size: str | None,
    where: str = "",
) -> None:
    """Refuses options the configured image model does not take, naming what it does."""
    caps = capabilities(model)
    if caps is None:
        return
    prefix = f"{where}: " if where else ""
    if aspect_ratio is not None and aspect_ratio not in caps.aspect_ratios:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}{model} does not take aspect_ratio {aspect_ratio}; it takes "
            f"{', '.join(sorted(caps.aspect_ratios))}",
        )
    if image_size is not None and image_size not in caps.image_sizes:
        offered = ", ".join(sorted(caps.image_sizes)) or "none (it makes one size)"
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}{model} does not take image_size {image_size}; it takes {offered}",
        )


def check_sources(
    model: str, item: GenerateItem, batch: bool, where: str = "", kit: Kit | None = None
) -> None:
    """An item's reference sources and formats: how many images in all (a kit's references
    included) and how many subjects (the model's limits, the contract's 14 where the model is
    unknown), one base of one image, formats made interactively (each after the first is sent
    the first's output), and a kit's attempts within an item's images."""
    prefix = f"{where}: " if where else ""
    caps = capabilities(model)
    limit = caps.max_references if caps is not None else MAX_REFERENCES
    images = item.image_count + (len(kit.references) if kit is not None else 0)
    if images > limit:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}{images} reference images (a query counts its top_k, a kit its "
            f"references, and each format after the first adds the first's output); {model} "
            f"takes at most {limit}",
        )
    if kit is not None:
        check_kit_use(kit, item, batch, prefix)
    subjects = sum(s.most for s in item.sources if s.role == "subject")
    if caps is not None and caps.max_subjects is not None and subjects > caps.max_subjects:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}{subjects} subject images; {model} keeps at most {caps.max_subjects} "
            "people or characters consistent",
        )
    bases = [s for s in item.sources if s.role == "base"]
    if len(bases) > 1:
        raise CodedError(ErrorCode.invalid_references, f"{prefix}{len(bases)} bases; edit one")
    if bases and bases[0].most != 1:
        raise CodedError(
            ErrorCode.invalid_references,
            f"{prefix}a base is one image ({bases[0].most} given): one asset id, an upload, a "
            "URL or a query with top_k 1",
        )
    if batch and len(item.formats) > 1:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}aspect_ratios makes each format from the first's output, which a Gemini "
            "batch cannot wait for: use mode interactive, or one item per ratio",
        )


def check_kit_use(kit: Kit, item: GenerateItem, batch: bool, prefix: str = "") -> None:
    """A kit's outputs are scored and made again when they fall short: interactively only,
    and every attempt's images kept apart (IMAGES_PER_ITEM in all)."""
    if batch:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}a kit scores each output and makes it again when it falls short, which "
            "a Gemini batch cannot wait for: use mode interactive",
        )
    per_attempt = item.count * len(item.formats)
    if per_attempt * kit.checks.attempts > IMAGES_PER_ITEM:
        raise CodedError(
            ErrorCode.option_not_supported,
            f"{prefix}{per_attempt} image(s) an attempt × {kit.checks.attempts} attempts "
            f"(kit {kit.ref}) is over the {IMAGES_PER_ITEM} an item keeps",
        )


# ── webhooks ────────────────────────────────────────────────────────────────────────────────


def check_webhook_url(url: str, allow_hosts: list[str]) -> None:
    """A webhook goes where a URL item may come from (public addresses only), unless its host
    is one the operator allows (ASSETRAG_WEBHOOK_ALLOW_HOSTS). Raises SourceRejected."""
    # imported here: the rules stay importable without Redis and httpx (the CLI's import)
    from shared.sources import SourceRejected, check_public_host

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceRejected(ErrorCode.unsupported_url, f"a webhook must be an http(s) URL: {url}")
    if parts.hostname.lower() in {h.lower() for h in allow_hosts}:
        return
    check_public_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
