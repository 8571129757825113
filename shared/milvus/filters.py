"""Search filters as Milvus boolean expressions: equality on a metadata key or a few
top-level fields, every value written as a safe literal."""

from __future__ import annotations

import json
import math

from shared.contract import FILTER_FIELD_RE, FilterValue

TOP_LEVEL_FILTER_FIELDS = frozenset({"filename", "source", "mime_type"})


def literal(value: FilterValue) -> str:
    """A Milvus expression literal; json.dumps quotes and escapes strings safely."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("filter values must be finite numbers")
        return repr(value)
    if isinstance(value, str):
        # Milvus Lite's lexer knows only \" \' \\ \n \r \t escapes, not \uXXXX.
        if any(ord(ch) < 0x20 and ch not in "\n\r\t" for ch in value):
            raise ValueError("filter values must not contain control characters")
        return json.dumps(value, ensure_ascii=False)
    raise ValueError(f"unsupported filter value type {type(value).__name__}")


def build_filter(filter: dict[str, FilterValue] | None) -> str:
    """Equality on metadata[key] (or a few top-level fields), joined with `and`."""
    if not filter:
        return ""
    clauses = []
    for key, value in sorted(filter.items()):
        if not isinstance(key, str) or not FILTER_FIELD_RE.fullmatch(key):
            raise ValueError(f"invalid filter field {key!r}")
        if key in TOP_LEVEL_FILTER_FIELDS:
            if not isinstance(value, str):
                raise ValueError(f"filter field {key!r} takes a string")
            clauses.append(f"{key} == {literal(value)}")
        else:
            clauses.append(f'metadata["{key}"] == {literal(value)}')
    return " and ".join(clauses)
