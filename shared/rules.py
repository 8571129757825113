"""Rules the API checks at submit and the workers check again when they act: one function
each, so both sides always agree. Each raises a CodedError."""

from __future__ import annotations

from shared.contract import CollectionInfo, ErrorCode
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
