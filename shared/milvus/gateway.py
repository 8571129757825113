"""The Milvus gateway: the only module that talks to Milvus (through pymilvus' MilvusClient).

The API process imports this too, so it must stay free of torch; numpy is fine.

Facts about milvus-lite 3 (the pure-Python engine) that shape this module, read from its
source and measured (see bench/milvus_search.py):

- A local Milvus Lite "file" is a directory. pymilvus only routes URIs ending in ``.db`` to
  milvus-lite, so for any other local path we start the in-process gRPC server ourselves via
  ``milvus_lite.server_manager`` (which is what pymilvus does for ``.db``). The directory is
  locked by one process; other processes must share it through ``milvus-lite server``.
- Writes land in a memtable that every search scans by brute force, so an upsert is visible to
  the next search without a flush. The vector index (HNSW) only covers flushed segments, and it
  is built by a background thread after the flush. We flush after every upsert so that the
  brute-force part stays small; a flush of a batch costs a few milliseconds.
- A collection with an index must be loaded before search/query/get; load is synchronous.
- The schema ``description`` is dropped by Milvus Lite; collection ``properties`` survive a
  restart in both Milvus Lite and a Milvus server, so our bookkeeping lives there.
- ``count(*)`` without a filter is exact and deduplicates upserted primary keys.

A collection is reached through an alias (``products``) naming its current version, a
collection of its own (``products__v2``); a re-index builds the next version beside it and
swaps the alias in one step. Checked on Milvus Lite 3.2 and Milvus 2.3.5: aliases work for
describe, load, upsert, get, query, search and count on both; ``describe_collection`` of an
alias answers the target's name and properties; dropping through an alias drops the target
on Lite and is refused by a server, so drops name versions. Lite 3.2 has BM25 full-text
search (its scores come back negated), ``hybrid_search`` and range search, but no
``add_collection_field``; Milvus 2.3.5 has range search and aliases, not BM25 (2.5+).
Collections made before versions (a plain collection under its own name) keep working
and are adopted as version 1 when first re-indexed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import numpy as np
import tenacity
from pydantic import BaseModel, Field

from shared import contract
from shared.contract import (
    FILTER_FIELD_RE,
    TENANT_RE,
    VECTOR_ONLY,
    CollectionInfo,
    CollectionVersion,
    ErrorCode,
    FilterValue,
    Finder,
    valid_collection_name,
)
from shared.errors import CodedError, Conflict, NotFound, Unavailable
from shared.milvus.schema import (
    METADATA_PROPERTY,
    STORED_FIELDS,
    VERSION_RE,
    Bookkeeping,
    base_name,
    index_params,
    keyword_text,
    schema,
    version_name,
)
from shared.milvus.schema import pymilvus as _pymilvus
from shared.milvus.write_marks import WriteMarks
from shared.rules import check_model

if TYPE_CHECKING:
    from pymilvus import MilvusClient, MilvusException

TOP_LEVEL_FILTER_FIELDS = frozenset({"filename", "source", "mime_type"})
Metric = Literal["COSINE", "IP"]
_REMOTE_SCHEMES = ("http", "https", "tcp", "unix")
# pymilvus pings every 10 s even when idle; the Milvus Lite server keeps gRPC's default of at
# most one ping per 5 minutes without calls and answers GOAWAY "too_many_pings". Ping only
# during calls, and rarely.
log = logging.getLogger("assetrag.vectors")
_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": 0,
}
# How many candidates each search of a hybrid query brings to the fusion.
FUSION_DEPTH = 50


class _NoMvccWarning(logging.Filter):
    # Milvus Lite answers no MVCC timestamp, and pymilvus' query iterator warns on every
    # page that it falls back to the client's clock, which is right for paging here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_NoMvccWarning())
_CREATE_SETTLE_ATTEMPTS = 50
# How long a process trusts what it last read of a collection (name, model, dimension): a
# submit then costs no Milvus round trip. A collection dropped elsewhere is seen this late at
# most, and the worker that runs the job checks again.
DESCRIBE_TTL_S = 5.0


# TenantVectors' physical names: t_<tenant>__<name>
_TENANT_PREFIX_RE = re.compile(r"^t_[A-Za-z0-9]{1,32}__")


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        # Messages name the collection as its tenant called it.
        shown = _TENANT_PREFIX_RE.sub("", name)
        super().__init__(ErrorCode.collection_not_found, f"no collection {shown}")


class VersionNotFound(NotFound):
    def __init__(self, name: str, number: int) -> None:
        shown = _TENANT_PREFIX_RE.sub("", name)
        super().__init__(ErrorCode.version_not_found, f"collection {shown} has no version {number}")


class KeywordSearchUnavailable(CodedError):
    def __init__(self, name: str, why: str) -> None:
        shown = _TENANT_PREFIX_RE.sub("", name)
        super().__init__(
            ErrorCode.keyword_search_unavailable, f"collection {shown} has no keyword search: {why}"
        )


class VectorStoreUnavailable(Unavailable):
    """Milvus could not be reached."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.vector_store_unavailable, message)


class AssetRecord(BaseModel):
    asset_id: str
    vector: list[float] | None = None
    filename: str = ""
    source: str = ""
    content_key: str = ""
    mime_type: str = ""
    width: int = 0
    height: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)

    def public(self, collection: str) -> contract.Asset:
        return contract.Asset(
            **self.model_dump(exclude={"vector", "content_key"}),
            content_url=contract.asset_content_url(collection, self.asset_id),
            thumbnail_url=contract.thumbnail_url(collection, self.asset_id),
        )


class VectorHit(BaseModel):
    asset_id: str
    score: float
    filename: str
    source: str
    metadata: dict[str, Any]
    content_key: str
    found_by: list[Finder] = Field(default_factory=lambda: list(VECTOR_ONLY))

    def public(self, collection: str) -> contract.Hit:
        return contract.Hit(
            **self.model_dump(exclude={"content_key"}),
            content_url=contract.asset_content_url(collection, self.asset_id),
            thumbnail_url=contract.thumbnail_url(collection, self.asset_id),
        )


def _literal(value: FilterValue) -> str:
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
            clauses.append(f"{key} == {_literal(value)}")
        else:
            clauses.append(f'metadata["{key}"] == {_literal(value)}')
    return " and ".join(clauses)


def _index_being_written(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, _pymilvus().MilvusException) and (
        "read error" in text or "not fully written" in text
    )


def _is_not_found(exc: MilvusException) -> bool:
    # Milvus Lite answers code 100 "does not exist"; a Milvus server code 100 "not found".
    text = str(exc).lower()
    return exc.code == 100 or "not exist" in text or "not found" in text


def _is_not_loaded(exc: MilvusException) -> bool:
    # Milvus Lite: code 101 "is in state 'released'; call load()"; a server: "not loaded".
    text = str(exc).lower()
    return exc.code == 101 or "call load()" in text or "not loaded" in text


def _translated(name: str, exc: MilvusException) -> Exception:
    if _is_not_found(exc) and "collection" in str(exc).lower():
        return CollectionNotFound(name)
    return exc


def _local_server_uri(path: str) -> str:
    """Start (or reuse) this process's Milvus Lite gRPC server for a data directory."""
    from milvus_lite.server_manager import server_manager_instance  # local mode only

    data_dir = Path(path).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    uri = server_manager_instance.start_and_get_uri(str(data_dir))
    if uri is None:
        raise RuntimeError(
            f"cannot open Milvus Lite at {data_dir} (is another process holding it? "
            "share it through `milvus-lite server` instead)"
        )
    return uri


def resolve_uri(uri: str) -> str:
    """Map our URI forms to one pymilvus accepts; local paths get an in-process server."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in _REMOTE_SCHEMES:
        return uri
    if scheme == "grpc":
        return "http://" + uri.split("://", 1)[1]
    return _local_server_uri(uri)


class VectorStore:
    """Connects on first use, so a process starts (and reports Milvus in /readyz) even while
    Milvus is down.

    Right on Milvus Lite and on a Milvus server alike, though they differ: Lite is strongly
    consistent and searches unflushed rows by brute force, so writes are flushed at once; a
    server makes flushes expensive (seconds, each sealing a segment) and searches growing
    segments well, and its reads are only boundedly consistent, so writes are never flushed
    and each leaves a mark (shared/milvus/write_marks.py) that later reads wait for.

    Methods take a collection's name (its alias) and, where it matters, a version: reads and
    writes without one go to the version the alias names now; with one, to that version,
    so a job that encoded with one version's model searches that version even if the alias
    moved meanwhile.
    """

    def __init__(self, uri: str, marks: WriteMarks | None = None) -> None:
        self.uri = uri
        self.marks = marks
        self._lock = threading.Lock()
        self._milvus: MilvusClient | None = None
        self._lite = True
        self._bm25 = True
        # name -> (when read, what it is, the version collection it names)
        self._described: dict[str, tuple[float, CollectionInfo, str]] = {}

    @property
    def _client(self) -> MilvusClient:
        if self._milvus is None:
            with self._lock:
                if self._milvus is None:
                    self._milvus = self._connect()
        return self._milvus

    def _connect(self) -> MilvusClient:
        try:
            client = _pymilvus().MilvusClient(uri=resolve_uri(self.uri), grpc_options=_GRPC_OPTIONS)
            version = str(client.get_server_version(timeout=10))
        except _pymilvus().MilvusException as exc:
            raise VectorStoreUnavailable(f"cannot reach Milvus at {self.uri}: {exc}") from exc
        self._lite = version.startswith("milvus_lite")
        self._bm25 = self._lite or _at_least(version, (2, 5))
        return client

    @property
    def is_lite(self) -> bool:
        """Milvus Lite (in-process or its gRPC server), rather than a Milvus server."""
        return self._client is not None and self._lite

    @property
    def keyword_capable(self) -> bool:
        """Whether new versions get BM25 full-text search (Milvus Lite 3, a server 2.5+)."""
        return self._client is not None and self._bm25

    def _fresh(self, name: str) -> dict[str, Any]:
        """Read options under which a server answers with every write noted so far."""
        if self.is_lite:
            return {}
        written_ms = self.marks.newest(base_name(name)) if self.marks is not None else None
        if written_ms is None:
            return {"consistency_level": "Bounded"}
        # A hybrid timestamp is physical ms << 18; one ms past the write covers it.
        return {"consistency_level": "Customized", "guarantee_timestamp": (written_ms + 1) << 18}

    def _note_write(self, physical: str) -> None:
        # Marked under the collection's name, whichever version was written: reads through
        # the alias must see writes made to a version before it was swapped in.
        if self.is_lite or self.marks is None:
            return
        from pymilvus.client import ts_utils

        address = self._client._get_connection().server_address
        written = ts_utils.get_collection_ts(physical, address)
        if written:
            self.marks.note(base_name(physical), int(written) >> 18)

    # ── collections ────────────────────────────────────────────

    def ensure_collection(
        self, name: str, dimension: int, model: str, metric: Metric = "COSINE"
    ) -> CollectionInfo:
        if metric not in ("COSINE", "IP"):
            raise ValueError("metric must be COSINE or IP (scores are similarities)")
        if not self._client.has_collection(name):
            self._create(name, Bookkeeping(model=model, dimension=dimension, metric=metric))
            with contextlib.suppress(_pymilvus().MilvusException):  # a racing creator's alias
                self._client.create_alias(version_name(name, 1), name)
        info = self._settled_info(name)
        check_model(info, model, dimension)
        self._load(name)  # cheap when loaded; needed after a server restart
        return info

    def create_version(self, name: str, model: str, dimension: int) -> CollectionInfo:
        """The collection's next version, empty, beside the one that answers; the alias
        stays where it is until `swap`."""
        current = self.get_collection(name, with_count=False)
        number = max(v.version for v in self.versions(name, counted=False)) + 1
        book = Bookkeeping(model=model, dimension=dimension, metric=current.metric, version=number)
        self._create(name, book)
        physical = version_name(name, number)
        self._settled_info(physical)
        self._load(physical)
        return self.get_collection(physical, with_count=False)

    def _create(self, name: str, book: Bookkeeping) -> None:
        book.keyword = self.keyword_capable
        # Another process may win the race (Milvus Lite may even answer "File exists"
        # mid-creation), so errors are ignored here; _settled_info decides what is there.
        physical = version_name(name, book.version)
        with contextlib.suppress(_pymilvus().MilvusException):
            self._client.create_collection(
                physical, schema=schema(book), properties={METADATA_PROPERTY: book.dump()}
            )
            # Not through create_collection's index_params: pymilvus then polls each index's
            # build every 0.5 s, a second for a new collection that has nothing to build.
            # The load that follows (ensure_collection, create_version) needs only the index
            # defined, which the call has done when it returns.
            self._client.create_index(physical, index_params(self._client, book), sync=False)

    def _load(self, name: str) -> None:
        """Loads a collection, repairing its index if Milvus Lite left it unreadable.

        Milvus Lite writes index files in place from a background thread: a load that reads
        one mid-write fails with a read error until the build is done, and a server stopped
        mid-write leaves the file short for good. The vectors themselves are intact, so after
        a short wait the index is dropped and built again.
        """
        try:
            self._load_when_written(name)
        except _pymilvus().MilvusException as exc:
            if not _index_being_written(exc):
                raise
            log.warning("index of %s is unreadable (%s); rebuilding it", name, exc)
            physical = self._target(name)
            with contextlib.suppress(_pymilvus().MilvusException):
                self._client.release_collection(physical)
            book = self._bookkeeping(physical)
            self._client.drop_index(physical, "vector")
            vector_only = book.model_copy(update={"keyword": False})
            self._client.create_index(physical, index_params(self._client, vector_only))
            self._client.load_collection(physical)

    @tenacity.retry(
        retry=tenacity.retry_if_exception(_index_being_written),
        wait=tenacity.wait_exponential(multiplier=0.1, max=1),
        stop=tenacity.stop_after_delay(5),
        reraise=True,
    )
    def _load_when_written(self, name: str) -> None:
        self._client.load_collection(name)

    def _settled_info(self, name: str) -> CollectionInfo:
        """Describe a collection that a racing creator may still be writing."""
        for _ in range(_CREATE_SETTLE_ATTEMPTS):
            try:
                return self.get_collection(name)
            except (CollectionNotFound, KeyError, ValueError):
                time.sleep(0.05)
        return self.get_collection(name)

    def _describe(self, name: str) -> dict[str, Any]:
        if not self._client.has_collection(name):  # spares pymilvus' ERROR log for a plain 404
            raise CollectionNotFound(name)
        try:
            return dict(self._client.describe_collection(name))
        except _pymilvus().MilvusException as exc:
            if _is_not_found(exc):
                raise CollectionNotFound(name) from exc
            raise

    def _bookkeeping(self, name: str) -> Bookkeeping:
        return Bookkeeping.of(self._describe(name))

    def get_collection(self, name: str, with_count: bool = True) -> CollectionInfo:
        """Describes a collection (through its alias: the version that answers);
        `with_count=False` skips the count(*) query and may answer from what this process
        read within DESCRIBE_TTL_S."""
        if not with_count and (info := self.cached(name)) is not None:
            return info
        description = self._describe(name)
        book = Bookkeeping.of(description)
        target = str(description.get("collection_name") or name)
        # A version asked for by its own name is shown under its collection's name.
        shown = base_name(name) if name == version_name(base_name(name), book.version) else name
        info = book.info(shown)
        self._described[name] = (time.monotonic(), info, target)
        return info.model_copy(update={"count": self.count(name)}) if with_count else info

    def forget(self, name: str) -> None:
        """The next read of the collection asks Milvus, not this process' memory of it."""
        self._described.pop(name, None)

    def cached(self, name: str) -> CollectionInfo | None:
        """What this process read of the collection within DESCRIBE_TTL_S, without asking."""
        read_at, info, _ = self._described.get(name, (0.0, None, ""))
        return info if time.monotonic() - read_at < DESCRIBE_TTL_S else None

    def _target(self, name: str, version: int | None = None) -> str:
        """What to call to reach `version` of `name`: the name itself by default (Milvus
        resolves an alias in the call, so a swap elsewhere is seen at once), else the
        collection holding that version."""
        if version is None:
            return name
        info = self.get_collection(name, with_count=False)
        if version == info.version:
            return self._described[name][2]
        return version_name(name, version)

    def _has_keyword(self, name: str) -> bool:
        """Whether what `name` reaches has keyword fields; a cached "no" is checked again, as
        a re-index elsewhere may have just swapped in a version that has them."""
        if self.get_collection(name, with_count=False).keyword_search:
            return True
        self._described.pop(name, None)
        return self.get_collection(name, with_count=False).keyword_search

    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(name))

    def _names(self) -> tuple[set[str], set[str]]:
        """Every collection and every alias."""
        collections = set(self._client.list_collections())
        aliases = set(self._client.list_aliases().get("aliases") or [])
        return collections, aliases

    def list_collections(self) -> list[CollectionInfo]:
        """One entry a collection (its versions hidden behind the alias)."""
        collections, aliases = self._names()
        shown = aliases | {c for c in collections if not _is_version(c, aliases)}
        infos = []
        for name in sorted(shown):
            try:
                infos.append(self.get_collection(name))
            except (CollectionNotFound, KeyError, ValueError):
                continue  # dropped meanwhile, or not one of ours
        return infos

    def _version_names(self, name: str) -> list[str]:
        collections, _ = self._names()
        return sorted(c for c in collections if c == name or base_name(c) == name)

    def versions(self, name: str, counted: bool = True) -> list[CollectionVersion]:
        current = self._fresh_target(name)
        found = []
        for physical in self._version_names(name):
            try:
                book = self._bookkeeping(physical)
            except (CollectionNotFound, KeyError, ValueError):
                continue
            found.append(
                CollectionVersion(
                    version=book.version,
                    model=book.model,
                    dimension=book.dimension,
                    count=self.count(physical) if counted else 0,
                    created_at=book.created_at,
                    keyword_search=book.keyword,
                    current=physical == current,
                )
            )
        return sorted(found, key=lambda v: v.version)

    def _fresh_target(self, name: str) -> str:
        """The collection the alias names now (the name itself for a pre-version one)."""
        self._described.pop(name, None)
        self.get_collection(name, with_count=False)
        return self._described[name][2]

    def adopt(self, name: str) -> None:
        """A collection made before versions becomes version 1 behind an alias. Between the
        rename and the alias its name answers "not found" for a moment."""
        if self._fresh_target(name) != name:
            return  # reached through an alias already
        self._client.rename_collection(name, version_name(name, 1))
        self._client.create_alias(version_name(name, 1), name)
        self._described.pop(name, None)

    def swap(self, name: str, version: int) -> None:
        """Points the alias at another version, in one step."""
        self._client.alter_alias(version_name(name, version), name)
        self._described.pop(name, None)

    def drop_version(self, name: str, version: int) -> None:
        physical = version_name(name, version)
        if self._fresh_target(name) == physical:
            raise Conflict(
                ErrorCode.version_in_use,
                f"version {version} answers for {_shown(name)}; re-index to another first",
            )
        if not self._client.has_collection(physical):
            raise VersionNotFound(name, version)
        self._client.drop_collection(physical)
        self._described.pop(physical, None)

    def drop_collection(self, name: str) -> None:
        """The alias and every version."""
        self._described.pop(name, None)
        if not self._client.has_collection(name):
            raise CollectionNotFound(name)
        physical = self._version_names(name)
        if name not in physical:
            self._client.drop_alias(name)
        for each in physical:
            self._client.drop_collection(each)
            self._described.pop(each, None)
        if self.marks is not None:
            self.marks.forget(name)

    def count(self, name: str, version: int | None = None) -> int:
        # count(*) without a filter is exact and counts each upserted primary key once.
        target = name if version is None else self._target(name, version)
        fresh = self._fresh(name)
        rows = self._call(
            name,
            lambda: self._client.query(target, filter="", output_fields=["count(*)"], **fresh),
        )
        return int(rows[0]["count(*)"])

    # ── data ───────────────────────────────────────────────────

    def upsert(self, name: str, records: list[AssetRecord], version: int | None = None) -> int:
        if not records:
            return 0
        target = self._target(name, version)
        try:
            result = self._upsert_rows(target, records)
        except _pymilvus().MilvusException:
            # the rows' shape is read from a cached describe: a swap elsewhere may have put
            # a version with (or without) keyword fields behind the alias
            self._described.pop(target, None)
            result = self._upsert_rows(target, records)
        if self.is_lite:
            # Lite scans unflushed rows by brute force on every search; a flush puts them
            # under the HNSW index (and Lite merges the small segments in the background).
            self._client.flush(target)
        else:
            self._note_write(target)
        return int(result.get("upsert_count", len(records)))

    def _upsert_rows(self, target: str, records: list[AssetRecord]) -> dict[str, Any]:
        keyword = self.get_collection(target, with_count=False).keyword_search
        rows = [_row(record, keyword) for record in records]
        return dict(self._call(target, lambda: self._client.upsert(target, rows)))

    def search(
        self,
        name: str,
        vectors: list[list[float]] | np.ndarray,
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        min_score: float | None = None,
        version: int | None = None,
    ) -> list[list[VectorHit]]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        data = np.asarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError("vectors must be a non-empty 2-D array")
        target = self._target(name, version)
        answer = self._search(
            name,
            target,
            data=data.tolist(),
            anns_field="vector",
            limit=top_k,
            filter=build_filter(filter),
            search_params={"params": {"ef": max(64, top_k)}},
        )
        return [_hits(query_hits, "vector", min_score) for query_hits in answer]

    def keyword_search(
        self,
        name: str,
        texts: list[str],
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        version: int | None = None,
    ) -> list[list[VectorHit]]:
        """BM25 over each asset's words; a text whose words no asset holds finds nothing."""
        target = self._target(name, version)
        if not self._has_keyword(target):
            raise KeywordSearchUnavailable(name, self.keyword_unavailable_reason())
        answer = self._search(
            name,
            target,
            data=list(texts),
            anns_field="sparse",
            limit=top_k,
            filter=build_filter(filter),
            search_params={"metric_type": "BM25"},
        )
        return [_hits(query_hits, "keyword") for query_hits in answer]

    def keyword_unavailable_reason(self) -> str:
        if not self.keyword_capable:
            return "this Milvus server has no BM25 full-text search (it needs Milvus 2.5+)"
        return "it was made before keyword search; re-index it (the same model will do)"

    def neighbours(
        self, name: str, vectors: np.ndarray, threshold: float, limit: int, version: int | None
    ) -> list[list[tuple[str, float]]]:
        """Range search: for each vector, up to `limit` assets at least `threshold` similar."""
        target = self._target(name, version)
        answer = self._search(
            name,
            target,
            data=np.asarray(vectors, dtype=np.float32).tolist(),
            anns_field="vector",
            limit=limit,
            output_fields=["asset_id"],
            # Milvus' radius is exclusive; a hair below keeps similarities equal to it.
            search_params={"params": {"radius": threshold - 1e-6, "ef": max(64, limit)}},
        )
        return [
            [(str(hit.get("asset_id", hit.get("id"))), float(hit["distance"])) for hit in hits]
            for hits in answer
        ]

    def _search(self, name: str, target: str, **options: Any) -> list[Any]:
        options.setdefault("output_fields", ["filename", "source", "metadata", "content_key"])
        fresh = self._fresh(name)

        def search() -> list[Any]:
            # read here: pymilvus may raise only while the hits are read
            return [list(hits) for hits in self._client.search(target, **options, **fresh)]

        return list(self._call(name, search))

    def get_asset(self, name: str, asset_id: str, with_vector: bool = False) -> AssetRecord | None:
        fields = STORED_FIELDS + (["vector"] if with_vector else [])
        fresh = self._fresh(name)
        rows = self._call(
            name, lambda: self._client.get(name, ids=[asset_id], output_fields=fields, **fresh)
        )
        if not rows:
            return None
        return _record(rows[0])

    def get_assets(
        self, name: str, asset_ids: list[str], version: int | None = None, with_vector: bool = False
    ) -> list[AssetRecord]:
        """The records of these ids that exist, in no particular order."""
        if not asset_ids:
            return []
        target = self._target(name, version)
        fields = STORED_FIELDS + (["vector"] if with_vector else [])
        fresh = self._fresh(name)
        rows = self._call(
            name,
            lambda: self._client.get(target, ids=list(asset_ids), output_fields=fields, **fresh),
        )
        return [_record(row) for row in rows]

    def list_assets(
        self,
        name: str,
        limit: int,
        after: str | None = None,
        version: int | None = None,
        fields: list[str] | None = None,
    ) -> list[AssetRecord]:
        """Up to `limit` assets in asset-id order, starting after the id `after`.

        Milvus Lite's plain query answers in storage order (segments, then the memtable),
        which shifts as rows are written, while its query iterator answers in primary-key
        order. A Milvus server's query with a limit answers in primary-key order, and honours
        the write marks, which its iterator (fixing its own read time) does not."""
        target = self._target(name, version)
        where = "" if after is None else f"asset_id > {_literal(after)}"
        output = STORED_FIELDS if fields is None else ["asset_id", *fields]
        fresh = self._fresh(name)

        def page() -> list[dict[str, Any]]:
            if not self.is_lite:
                return list(
                    self._client.query(
                        target, filter=where, output_fields=output, limit=limit, **fresh
                    )
                )
            rows = self._client.query_iterator(
                target, batch_size=limit, filter=where, output_fields=output
            )
            try:
                return list(rows.next())
            finally:
                rows.close()

        return [_record(row) for row in self._call(name, page)]

    def get_vectors(
        self, name: str, asset_ids: list[str], version: int | None = None
    ) -> dict[str, list[float]]:
        if not asset_ids:
            return {}
        target = self._target(name, version)
        fresh = self._fresh(name)
        rows = self._call(
            name,
            lambda: self._client.get(
                target, ids=list(asset_ids), output_fields=["asset_id", "vector"], **fresh
            ),
        )
        return {row["asset_id"]: [float(x) for x in row["vector"]] for row in rows}

    # ── plumbing ───────────────────────────────────────────────

    def ping(self) -> None:
        self._client.get_server_version(timeout=5)

    def close(self) -> None:
        if self._milvus is not None:
            self._milvus.close()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, fn: Any) -> Any:
        """Runs one Milvus call. A collection that a server restart left unloaded is loaded
        and the call made again; "no such collection" becomes CollectionNotFound."""
        try:
            return fn()
        except _pymilvus().MilvusException as exc:
            if not _is_not_loaded(exc):
                raise _translated(name, exc) from exc
        log.info("collection %s is not loaded (the server restarted?); loading it", name)
        self._described.pop(name, None)
        self._load(name)
        try:
            return fn()
        except _pymilvus().MilvusException as exc:
            raise _translated(name, exc) from exc


def _at_least(server_version: str, wanted: tuple[int, int]) -> bool:
    match = re.match(r"v?(\d+)\.(\d+)", server_version)
    return match is not None and (int(match[1]), int(match[2])) >= wanted


def _is_version(physical: str, aliases: set[str]) -> bool:
    # A version's base is an alias; a plain collection that happens to end in __v<n> (a
    # tenant's collection named v2: t_x__v2) is not.
    return VERSION_RE.fullmatch(physical) is not None and base_name(physical) in aliases


def _shown(name: str) -> str:
    return _TENANT_PREFIX_RE.sub("", name)


def _row(record: AssetRecord, keyword: bool) -> dict[str, Any]:
    if record.vector is None:
        raise ValueError(f"asset {record.asset_id!r} has no vector")
    row = record.model_dump()
    if keyword:
        row["text"] = keyword_text(record.filename, record.metadata)
    return row


def _record(row: Any) -> AssetRecord:
    fields = dict(row)
    if "vector" in fields:
        fields["vector"] = [float(x) for x in fields["vector"]]
    return AssetRecord.model_validate(fields)


def _hits(query_hits: Any, finder: Finder, min_score: float | None = None) -> list[VectorHit]:
    hits = []
    for hit in query_hits:
        # COSINE/IP: a similarity, higher is better. BM25: Milvus Lite answers the score
        # negated, a server as it is.
        score = abs(float(hit["distance"])) if finder == "keyword" else float(hit["distance"])
        if min_score is not None and score < min_score:
            continue
        entity = hit["entity"]
        hits.append(
            VectorHit(
                # the primary key: by its name from Milvus Lite, as "id" from a 2.3 server
                asset_id=str(hit.get("asset_id", hit.get("id"))),
                score=score,
                filename=entity.get("filename") or "",
                source=entity.get("source") or "",
                metadata=entity.get("metadata") or {},
                content_key=entity.get("content_key") or "",
                found_by=[finder],
            )
        )
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits


class TenantVectors:
    """One tenant's view of the store: only its collections, under the names it chose.

    With API keys on, tenant T's collection C is stored as ``t_T__C``; tenant names are
    letters and digits, so the prefix cannot be forged from another tenant's name. Without
    keys (tenant None) names are used as they are.
    """

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

    def has_collection(self, name: str) -> bool:
        return self.store.has_collection(self.physical(name))

    def get_collection(self, name: str, with_count: bool = True) -> CollectionInfo:
        return self._mine(self.store.get_collection(self.physical(name), with_count))

    def forget(self, name: str) -> None:
        self.store.forget(self.physical(name))

    def keyword_unavailable(self, name: str) -> KeywordSearchUnavailable:
        return KeywordSearchUnavailable(
            self.physical(name), self.store.keyword_unavailable_reason()
        )

    def cached_collection(self, name: str) -> CollectionInfo | None:
        """What this process recently read of the collection (None: ask find_collection)."""
        info = self.store.cached(self.physical(name))
        return None if info is None else self._mine(info)

    def find_collection(self, name: str) -> CollectionInfo | None:
        """The collection (uncounted), or None where there is none."""
        try:
            return self.get_collection(name, with_count=False)
        except CollectionNotFound:
            return None

    def list_collections(self) -> list[CollectionInfo]:
        infos = self.store.list_collections()
        if self.tenant is None:  # keys off: everything but what tenants made while keys were on
            return [i for i in infos if not _TENANT_PREFIX_RE.match(i.name)]
        return [self._mine(i) for i in infos if i.name.startswith(self.prefix)]

    def ensure_collection(
        self, name: str, dimension: int, model: str, metric: Metric = "COSINE"
    ) -> CollectionInfo:
        return self._mine(
            self.store.ensure_collection(self.physical(name), dimension, model, metric)
        )

    def versions(self, name: str, counted: bool = True) -> list[CollectionVersion]:
        return self.store.versions(self.physical(name), counted)

    def create_version(self, name: str, model: str, dimension: int) -> CollectionInfo:
        return self._mine(self.store.create_version(self.physical(name), model, dimension))

    def adopt(self, name: str) -> None:
        self.store.adopt(self.physical(name))

    def swap(self, name: str, version: int) -> None:
        self.store.swap(self.physical(name), version)

    def drop_version(self, name: str, version: int) -> None:
        self.store.drop_version(self.physical(name), version)

    def drop_collection(self, name: str) -> None:
        self.store.drop_collection(self.physical(name))

    def count(self, name: str, version: int | None = None) -> int:
        return self.store.count(self.physical(name), version)

    def upsert(self, name: str, records: list[AssetRecord], version: int | None = None) -> int:
        return self.store.upsert(self.physical(name), records, version)

    def search(
        self,
        name: str,
        vectors: list[list[float]] | np.ndarray,
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        min_score: float | None = None,
        version: int | None = None,
    ) -> list[list[VectorHit]]:
        return self.store.search(self.physical(name), vectors, top_k, filter, min_score, version)

    def keyword_search(
        self,
        name: str,
        texts: list[str],
        top_k: int,
        filter: dict[str, FilterValue] | None = None,
        version: int | None = None,
    ) -> list[list[VectorHit]]:
        return self.store.keyword_search(self.physical(name), texts, top_k, filter, version)

    def neighbours(
        self, name: str, vectors: np.ndarray, threshold: float, limit: int, version: int | None
    ) -> list[list[tuple[str, float]]]:
        return self.store.neighbours(self.physical(name), vectors, threshold, limit, version)

    def get_asset(self, name: str, asset_id: str, with_vector: bool = False) -> AssetRecord | None:
        return self.store.get_asset(self.physical(name), asset_id, with_vector)

    def get_assets(
        self, name: str, asset_ids: list[str], version: int | None = None, with_vector: bool = False
    ) -> list[AssetRecord]:
        return self.store.get_assets(self.physical(name), asset_ids, version, with_vector)

    def list_assets(
        self,
        name: str,
        limit: int,
        after: str | None = None,
        version: int | None = None,
        fields: list[str] | None = None,
    ) -> list[AssetRecord]:
        return self.store.list_assets(self.physical(name), limit, after, version, fields)

    def get_vectors(
        self, name: str, asset_ids: list[str], version: int | None = None
    ) -> dict[str, list[float]]:
        return self.store.get_vectors(self.physical(name), asset_ids, version)

    def asset_ids(self, name: str, version: int | None = None, page: int = 2048) -> list[str]:
        """Every asset id in a version, in id order (ids only: cheap to page through)."""
        ids: list[str] = []
        after: str | None = None
        while found := self.list_assets(name, page, after, version, fields=[]):
            ids += [record.asset_id for record in found]
            after = ids[-1]
        return ids
