"""One tenant's view of the vector store: TenantVectors, which maps the names a tenant chose
to the collections they are stored as, and back.

With API keys on, tenant T's collection C is stored as ``t_T__C``; tenant names are letters
and digits, so the prefix cannot be forged from another tenant's name. Without keys (tenant
None) names are used as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from shared.contract import TENANT_RE, CollectionInfo, FilterValue, valid_collection_name
from shared.milvus.errors import TENANT_PREFIX_RE, CollectionNotFound, KeywordSearchUnavailable
from shared.milvus.gateway import VectorStore

P = ParamSpec("P")
R = TypeVar("R")


def _scoped(
    method: Callable[Concatenate[VectorStore, str, P], R],
) -> Callable[Concatenate[TenantVectors, str, P], R]:
    """A VectorStore method as a tenant calls it, with a collection name of its own."""

    @functools.wraps(method)
    def scoped(self: TenantVectors, name: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, self._on(method.__name__, name, *args, **kwargs))

    return scoped


class TenantVectors:
    """One tenant's view of the store: only its collections, under the names it chose."""

    def __init__(self, store: VectorStore, tenant: str | None) -> None:
        if tenant is not None and not TENANT_RE.fullmatch(tenant):
            raise ValueError(f"tenant names are 1-32 letters and digits, not {tenant!r}")
        self.store = store
        self.tenant = tenant
        self.prefix = f"t_{tenant}__" if tenant is not None else ""

    def physical(self, name: str) -> str:
        # A name no one could have created names no collection.
        if not valid_collection_name(name):
            raise CollectionNotFound(name)
        return f"{self.prefix}{name}"

    def _mine(self, info: CollectionInfo) -> CollectionInfo:
        return info.model_copy(update={"name": info.name.removeprefix(self.prefix)})

    def _on(self, method: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """The tenant rule, for every call on one collection: the store's `method` is called
        with the collection's stored name, and a collection it answers is shown under the
        tenant's name."""
        answer = getattr(self.store, method)(self.physical(name), *args, **kwargs)
        return self._mine(answer) if isinstance(answer, CollectionInfo) else answer

    has_collection = _scoped(VectorStore.has_collection)
    get_collection = _scoped(VectorStore.get_collection)
    forget = _scoped(VectorStore.forget)
    # What this process recently read of the collection (None: ask find_collection).
    cached_collection = _scoped(VectorStore.cached)
    ensure_collection = _scoped(VectorStore.ensure_collection)
    versions = _scoped(VectorStore.versions)
    create_version = _scoped(VectorStore.create_version)
    adopt = _scoped(VectorStore.adopt)
    swap = _scoped(VectorStore.swap)
    drop_version = _scoped(VectorStore.drop_version)
    drop_collection = _scoped(VectorStore.drop_collection)
    count = _scoped(VectorStore.count)
    upsert = _scoped(VectorStore.upsert)
    delete_asset = _scoped(VectorStore.delete_asset)
    search = _scoped(VectorStore.search)
    keyword_search = _scoped(VectorStore.keyword_search)
    neighbours = _scoped(VectorStore.neighbours)
    get_asset = _scoped(VectorStore.get_asset)
    get_assets = _scoped(VectorStore.get_assets)
    list_assets = _scoped(VectorStore.list_assets)
    get_vectors = _scoped(VectorStore.get_vectors)

    def keyword_unavailable(self, name: str) -> KeywordSearchUnavailable:
        return KeywordSearchUnavailable(
            self.physical(name), self.store.keyword_unavailable_reason()
        )

    def find_collection(self, name: str) -> CollectionInfo | None:
        """The collection (uncounted), or None where there is none."""
        try:
            return self.get_collection(name, with_count=False)
        except CollectionNotFound:
            return None

    def list_collections(self) -> list[CollectionInfo]:
        infos = self.store.list_collections()
        if self.tenant is None:  # keys off: everything but what tenants made while keys were on
            return [i for i in infos if not TENANT_PREFIX_RE.match(i.name)]
        return [self._mine(i) for i in infos if i.name.startswith(self.prefix)]

    def asset_ids(
        self,
        name: str,
        version: int | None = None,
        page: int = 2048,
        filter: dict[str, FilterValue] | None = None,
    ) -> list[str]:
        """Every asset id in a version (matching `filter`, when given), in id order (ids only:
        cheap to page through)."""
        ids: list[str] = []
        after: str | None = None
        while found := self.list_assets(name, page, after, version, fields=[], filter=filter):
            ids += [record.asset_id for record in found]
            after = ids[-1]
        return ids
