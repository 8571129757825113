"""What goes wrong in the vector store, as coded errors: a collection or a version that is
not there, a collection without keyword search, Milvus out of reach; and which pymilvus
exceptions mean which.

Messages name a collection as its tenant called it, never by its stored name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.contract import ErrorCode
from shared.errors import CodedError, NotFound, Unavailable
from shared.milvus.schema import pymilvus as _pymilvus

if TYPE_CHECKING:
    from pymilvus import MilvusException

# TenantVectors' stored names: t_<tenant>__<name> (shared/milvus/tenants.py)
TENANT_PREFIX_RE = re.compile(r"^t_[A-Za-z0-9]{1,32}__")


def shown(name: str) -> str:
    """A stored collection name as its tenant knows it."""
    return TENANT_PREFIX_RE.sub("", name)


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.collection_not_found, f"no collection {shown(name)}")


class VersionNotFound(NotFound):
    def __init__(self, name: str, number: int) -> None:
        super().__init__(
            ErrorCode.version_not_found, f"collection {shown(name)} has no version {number}"
        )


class KeywordSearchUnavailable(CodedError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            ErrorCode.keyword_search_unavailable,
            f"collection {shown(name)} has no keyword search: {why}",
        )


class VectorStoreUnavailable(Unavailable):
    """Milvus could not be reached."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.vector_store_unavailable, message)


def index_being_written(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, _pymilvus().MilvusException) and (
        "read error" in text or "not fully written" in text
    )


def is_not_found(exc: MilvusException) -> bool:
    # Milvus Lite answers code 100 "does not exist"; a Milvus server code 100 "not found".
    text = str(exc).lower()
    return exc.code == 100 or "not exist" in text or "not found" in text


def is_not_loaded(exc: MilvusException) -> bool:
    # Milvus Lite: code 101 "is in state 'released'; call load()"; a server: "not loaded".
    text = str(exc).lower()
    return exc.code == 101 or "call load()" in text or "not loaded" in text


def translated(name: str, exc: MilvusException) -> Exception:
    """Milvus' "no such collection" as CollectionNotFound; any other exception as it is."""
    if is_not_found(exc) and "collection" in str(exc).lower():
        return CollectionNotFound(name)
    return exc
