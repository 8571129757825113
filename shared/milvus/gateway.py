"""The Milvus gateway: VectorStore, the one class that talks to Milvus (through pymilvus'
MilvusClient). It is built in layers, each a module of this package: connection.py (the
client, Lite or a server, read-your-writes), collections.py (make, load, describe, count),
versions.py (versions behind an alias) and this one, the assets: upsert, get, list and
vector, keyword and range search.

The API process imports this too, so it must stay free of torch; numpy is fine.

Facts about milvus-lite 3 (the pure-Python engine) that shape this module, read from its
source and measured (see bench/milvus_search.py); the others sit with the code they shape:

- Writes land in a memtable that every search scans by brute force, so an upsert is visible to
  the next search without a flush. The vector index (HNSW) only covers flushed segments, and it
  is built by a background thread after the flush. We flush after every upsert so that the
  brute-force part stays small; a flush of a batch costs a few milliseconds.
- Lite 3.2 has BM25 full-text search (its scores come back negated), ``hybrid_search`` and
  range search, but no ``add_collection_field``; Milvus 2.3.5 has range search and aliases,
  not BM25 (2.5+).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from shared.contract import FilterValue
from shared.milvus.errors import CollectionNotFound, KeywordSearchUnavailable
from shared.milvus.filters import build_filter, literal
from shared.milvus.records import AssetRecord, VectorHit, hit_id, hits_of, record_of, row_of
from shared.milvus.schema import STORED_FIELDS
from shared.milvus.schema import pymilvus as _pymilvus
from shared.milvus.versions import Versions


class _NoMvccWarning(logging.Filter):
    # Milvus Lite answers no MVCC timestamp, and pymilvus' query iterator warns on every
    # page that it falls back to the client's clock, which is right for paging here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_NoMvccWarning())


class VectorStore(Versions):
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

    def delete_asset(self, name: str, asset_id: str) -> None:
        """Deletes the asset's row from every version of the collection, not only the one
        that answers: a re-index building the next version has copied it there, or will
        copy it from the list it made, and the swap would bring it back. (A batch copying it
        at this very moment still can.) The original's bytes stay in the blob store: they
        are kept under the image's hash, shared with every collection and tenant holding
        the same image and with embeds in flight."""
        for target in self._version_names(name):
            try:
                self._call(
                    target, lambda target=target: self._client.delete(target, ids=[asset_id])
                )
            except CollectionNotFound:
                continue  # a version dropped meanwhile holds nothing
            if self.is_lite:
                self._client.flush(target)
            else:
                self._note_write(target)

    def _upsert_rows(self, target: str, records: list[AssetRecord]) -> dict[str, Any]:
        keyword = self.get_collection(target, with_count=False).keyword_search
        rows = [row_of(record, keyword) for record in records]
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
        return [hits_of(query_hits, "vector", min_score) for query_hits in answer]

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
        return [hits_of(query_hits, "keyword") for query_hits in answer]

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
        return [[(hit_id(hit), float(hit["distance"])) for hit in hits] for hits in answer]

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
        return record_of(rows[0])

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
        return [record_of(row) for row in rows]

    def list_assets(
        self,
        name: str,
        limit: int,
        after: str | None = None,
        version: int | None = None,
        fields: list[str] | None = None,
        filter: dict[str, FilterValue] | None = None,
    ) -> list[AssetRecord]:
        """Up to `limit` assets in asset-id order, starting after the id `after` (only those
        matching `filter`, when given).

        Milvus Lite's plain query answers in storage order (segments, then the memtable),
        which shifts as rows are written, while its query iterator answers in primary-key
        order. A Milvus server's query with a limit answers in primary-key order, and honours
        the write marks, which its iterator (fixing its own read time) does not."""
        target = self._target(name, version)
        clauses = [c for c in (build_filter(filter), after and f"asset_id > {literal(after)}") if c]
        where = " and ".join(f"({c})" for c in clauses)
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

        return [record_of(row) for row in self._call(name, page)]

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
