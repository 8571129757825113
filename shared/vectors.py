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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import numpy as np
import tenacity
from pydantic import BaseModel, Field

from shared.settings import TENANT_RE

if TYPE_CHECKING:
    from pymilvus import MilvusClient, MilvusException

# Milvus's own limit; the API keeps the names people choose to 64 characters, leaving room for
# the tenant prefix of TenantVectors.
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,254}$")
# Filter keys become part of a Milvus expression, so only plain identifiers are allowed.
FILTER_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TOP_LEVEL_FILTER_FIELDS = frozenset({"filename", "source", "mime_type"})
METADATA_PROPERTY = "assetrag.meta"
Metric = Literal["COSINE", "IP"]
_REMOTE_SCHEMES = ("http", "https", "tcp", "unix")
_OUTPUT_FIELDS = [
    "asset_id",
    "filename",
    "source",
    "content_key",
    "mime_type",
    "width",
    "height",
    "metadata",
    "created_at",
]
# pymilvus pings every 10 s even when idle; the Milvus Lite server keeps gRPC's default of at
# most one ping per 5 minutes without calls and answers GOAWAY "too_many_pings". Ping only
# during calls, and rarely.
log = logging.getLogger("assetrag.vectors")
_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": 0,
}
_HNSW_BUILD = {"M": 16, "efConstruction": 200}
_CREATE_SETTLE_ATTEMPTS = 50


class CollectionNotFound(Exception):
    """The named collection does not exist."""


class InvalidCollectionName(ValueError):
    """The name is not letters, digits and underscores starting with a letter (<= 64)."""


class ModelMismatch(Exception):
    """The collection exists but was made with another model or dimension."""


class CollectionInfo(BaseModel):
    name: str
    model: str
    dimension: int
    metric: str
    count: int | None
    created_at: float


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


class Hit(BaseModel):
    asset_id: str
    score: float
    filename: str
    source: str
    metadata: dict[str, Any]
    content_key: str


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME_RE.fullmatch(name):
        raise InvalidCollectionName(
            f"invalid collection name {name!r}: use letters, digits and underscores, "
            "start with a letter, at most 255 characters"
        )
    return name


def _literal(value: str | int | float | bool) -> str:
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


def build_filter(filter: dict[str, str | int | float | bool] | None) -> str:
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


@cache
def _pymilvus() -> ModuleType:
    """pymilvus, imported on first use: it pulls in pandas, which would add ~0.4 s to the
    API's start-up."""
    import pymilvus

    return pymilvus


class VectorStoreUnavailable(Exception):
    """Milvus could not be reached."""


class VectorStore:
    """Connects on first use, so a process starts (and reports Milvus in /readyz) even while
    Milvus is down."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._milvus: MilvusClient | None = None

    @property
    def _client(self) -> MilvusClient:
        if self._milvus is None:
            with self._lock:
                if self._milvus is None:
                    self._milvus = self._connect()
        return self._milvus

    def _connect(self) -> MilvusClient:
        try:
            return _pymilvus().MilvusClient(uri=resolve_uri(self.uri), grpc_options=_GRPC_OPTIONS)
        except _pymilvus().MilvusException as exc:
            raise VectorStoreUnavailable(f"cannot reach Milvus at {self.uri}: {exc}") from exc

    # ── collections ────────────────────────────────────────────

    def ensure_collection(
        self, name: str, dimension: int, model: str, metric: Metric = "COSINE"
    ) -> CollectionInfo:
        validate_collection_name(name)
        if metric not in ("COSINE", "IP"):
            raise ValueError("metric must be COSINE or IP (scores are similarities)")
        if not self._client.has_collection(name):
            self._create(name, dimension, model, metric)
        info = self._settled_info(name)
        if info.model != model or info.dimension != dimension:
            raise ModelMismatch(
                f"collection {name!r} holds {info.model} ({info.dimension}-d) vectors, "
                f"not {model} ({dimension}-d)"
            )
        self._load(name, info.metric)  # cheap when loaded; needed after a server restart
        return info

    def _load(self, name: str, metric: str) -> None:
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
            with contextlib.suppress(_pymilvus().MilvusException):
                self._client.release_collection(name)
            self._client.drop_index(name, "vector")
            self._client.create_index(name, self._index_params(metric))
            self._client.load_collection(name)

    @tenacity.retry(
        retry=tenacity.retry_if_exception(_index_being_written),
        wait=tenacity.wait_exponential(multiplier=0.1, max=1),
        stop=tenacity.stop_after_delay(5),
        reraise=True,
    )
    def _load_when_written(self, name: str) -> None:
        self._client.load_collection(name)

    def _index_params(self, metric: str) -> Any:
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type=metric, params=_HNSW_BUILD)
        return index

    def _create(self, name: str, dimension: int, model: str, metric: str) -> None:
        meta = {"model": model, "dimension": dimension, "metric": metric, "created_at": time.time()}
        index = self._index_params(metric)
        # Another process may win the race (Milvus Lite may even answer "File exists"
        # mid-creation), so errors are ignored here; _settled_info decides what is there.
        with contextlib.suppress(_pymilvus().MilvusException):
            self._client.create_collection(
                name,
                schema=_schema(dimension, json.dumps(meta)),
                index_params=index,
                properties={METADATA_PROPERTY: json.dumps(meta)},
            )

    def _settled_info(self, name: str) -> CollectionInfo:
        """Describe a collection that a racing creator may still be writing."""
        for _ in range(_CREATE_SETTLE_ATTEMPTS):
            try:
                return self.get_collection(name)
            except (CollectionNotFound, KeyError, ValueError):
                time.sleep(0.05)
        return self.get_collection(name)

    def get_collection(self, name: str, with_count: bool = True) -> CollectionInfo:
        """Describes a collection; `with_count=False` skips the count(*) query."""
        validate_collection_name(name)
        if not self._client.has_collection(name):  # spares pymilvus' ERROR log for a plain 404
            raise CollectionNotFound(name)
        try:
            desc = self._client.describe_collection(name)
        except _pymilvus().MilvusException as exc:
            if _is_not_found(exc):
                raise CollectionNotFound(name) from exc
            raise
        meta = _meta_from_description(desc)
        return CollectionInfo(
            name=name,
            model=str(meta["model"]),
            dimension=int(meta["dimension"]),
            metric=str(meta.get("metric", "COSINE")),
            count=self.count(name) if with_count else None,
            created_at=float(meta.get("created_at", 0.0)),
        )

    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(validate_collection_name(name)))

    def list_collections(self) -> list[CollectionInfo]:
        infos = []
        for name in sorted(self._client.list_collections()):
            try:
                infos.append(self.get_collection(name))
            except (CollectionNotFound, InvalidCollectionName, KeyError, ValueError):
                continue  # dropped meanwhile, or not one of ours
        return infos

    def drop_collection(self, name: str) -> None:
        validate_collection_name(name)
        if not self._client.has_collection(name):
            raise CollectionNotFound(name)
        self._client.drop_collection(name)

    def count(self, name: str) -> int:
        # count(*) without a filter is exact and counts each upserted primary key once.
        rows = self._call(
            name, lambda: self._client.query(name, filter="", output_fields=["count(*)"])
        )
        return int(rows[0]["count(*)"])

    # ── data ───────────────────────────────────────────────────

    def upsert(self, name: str, records: list[AssetRecord]) -> int:
        if not records:
            return 0
        rows = [_row(record) for record in records]
        result = self._call(name, lambda: self._client.upsert(name, rows))
        # Search sees the memtable without this; flushing moves rows under the HNSW index.
        self._client.flush(name)
        return int(result.get("upsert_count", len(rows)))

    def search(
        self,
        name: str,
        vectors: list[list[float]] | np.ndarray,
        top_k: int,
        filter: dict[str, str | int | float | bool] | None = None,
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        data = np.asarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError("vectors must be a non-empty 2-D array")
        expr = build_filter(filter)
        results = self._call(
            name,
            lambda: self._client.search(
                name,
                data=data.tolist(),
                limit=top_k,
                filter=expr,
                output_fields=["filename", "source", "metadata", "content_key"],
                search_params={"params": {"ef": max(64, top_k)}},
            ),
        )
        return [_hits(query_hits, min_score) for query_hits in results]

    def get_asset(self, name: str, asset_id: str, with_vector: bool = False) -> AssetRecord | None:
        fields = _OUTPUT_FIELDS + (["vector"] if with_vector else [])
        rows = self._call(
            name, lambda: self._client.get(name, ids=[asset_id], output_fields=fields)
        )
        if not rows:
            return None
        row = dict(rows[0])
        if with_vector:
            row["vector"] = [float(x) for x in row["vector"]]
        return AssetRecord.model_validate(row)

    def get_vectors(self, name: str, asset_ids: list[str]) -> dict[str, list[float]]:
        if not asset_ids:
            return {}
        rows = self._call(
            name,
            lambda: self._client.get(
                name, ids=list(asset_ids), output_fields=["asset_id", "vector"]
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
        """Run one Milvus call, turning "no such collection" into CollectionNotFound."""
        validate_collection_name(name)
        try:
            return fn()
        except _pymilvus().MilvusException as exc:
            if _is_not_found(exc) and "collection" in str(exc).lower():
                raise CollectionNotFound(name) from exc
            raise


def _schema(dimension: int, description: str) -> Any:
    # Milvus Lite drops the description; a Milvus server keeps it as a second copy.
    DataType = _pymilvus().DataType  # noqa: N806 (pymilvus' own name)
    schema = _pymilvus().MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=description
    )
    schema.add_field("asset_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("filename", DataType.VARCHAR, max_length=1024)
    schema.add_field("source", DataType.VARCHAR, max_length=2048)
    schema.add_field("content_key", DataType.VARCHAR, max_length=256)
    schema.add_field("mime_type", DataType.VARCHAR, max_length=128)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("created_at", DataType.DOUBLE)
    return schema


def _meta_from_description(desc: dict[str, Any]) -> dict[str, Any]:
    """Our bookkeeping: properties first (survive everywhere), then the description."""
    raw = (desc.get("properties") or {}).get(METADATA_PROPERTY) or desc.get("description")
    if not raw:
        raise KeyError("collection has no assetrag metadata")
    meta = json.loads(raw)
    if not isinstance(meta, dict) or "model" not in meta or "dimension" not in meta:
        raise ValueError("collection metadata is not assetrag's")
    return meta


def _row(record: AssetRecord) -> dict[str, Any]:
    if record.vector is None:
        raise ValueError(f"asset {record.asset_id!r} has no vector")
    return record.model_dump()


def _hits(query_hits: Any, min_score: float | None) -> list[Hit]:
    hits = []
    for hit in query_hits:
        score = float(hit["distance"])  # COSINE/IP: a similarity, higher is better
        if min_score is not None and score < min_score:
            continue
        entity = hit["entity"]
        hits.append(
            Hit(
                asset_id=str(hit["asset_id"]),
                score=score,
                filename=entity.get("filename") or "",
                source=entity.get("source") or "",
                metadata=entity.get("metadata") or {},
                content_key=entity.get("content_key") or "",
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
        return f"{self.prefix}{validate_collection_name(name)}"

    def _mine(self, info: CollectionInfo) -> CollectionInfo:
        return info.model_copy(update={"name": info.name.removeprefix(self.prefix)})

    def has_collection(self, name: str) -> bool:
        return self.store.has_collection(self.physical(name))

    def get_collection(self, name: str, with_count: bool = True) -> CollectionInfo:
        return self._mine(self.store.get_collection(self.physical(name), with_count))

    def list_collections(self) -> list[CollectionInfo]:
        infos = self.store.list_collections()
        return [self._mine(i) for i in infos if i.name.startswith(self.prefix)]

    def ensure_collection(
        self, name: str, dimension: int, model: str, metric: Metric = "COSINE"
    ) -> CollectionInfo:
        return self._mine(
            self.store.ensure_collection(self.physical(name), dimension, model, metric)
        )

    def drop_collection(self, name: str) -> None:
        self.store.drop_collection(self.physical(name))

    def count(self, name: str) -> int:
        return self.store.count(self.physical(name))

    def upsert(self, name: str, records: list[AssetRecord]) -> int:
        return self.store.upsert(self.physical(name), records)

    def search(
        self,
        name: str,
        vectors: list[list[float]] | np.ndarray,
        top_k: int,
        filter: dict[str, str | int | float | bool] | None = None,
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        return self.store.search(self.physical(name), vectors, top_k, filter, min_score)

    def get_asset(self, name: str, asset_id: str, with_vector: bool = False) -> AssetRecord | None:
        return self.store.get_asset(self.physical(name), asset_id, with_vector)

    def get_vectors(self, name: str, asset_ids: list[str]) -> dict[str, list[float]]:
        return self.store.get_vectors(self.physical(name), asset_ids)
