"""A collection's life in Milvus: made with its bookkeeping and index, loaded, described
(the description kept a few seconds), counted; and every call that reaches one, through
`_call`, which loads a collection a server restart left unloaded.

- A collection with an index must be loaded before search/query/get; load is synchronous.
- The schema ``description`` is dropped by Milvus Lite; collection ``properties`` survive a
  restart in both Milvus Lite and a Milvus server, so our bookkeeping lives there.
- ``count(*)`` without a filter is exact and deduplicates upserted primary keys.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Literal

import tenacity

from shared.contract import CollectionInfo
from shared.milvus.connection import Connection
from shared.milvus.errors import (
    CollectionNotFound,
    index_being_written,
    is_not_found,
    is_not_loaded,
    translated,
)
from shared.milvus.schema import (
    METADATA_PROPERTY,
    Bookkeeping,
    base_name,
    index_params,
    schema,
    version_name,
)
from shared.milvus.schema import pymilvus as _pymilvus
from shared.milvus.write_marks import WriteMarks
from shared.rules import check_model

Metric = Literal["COSINE", "IP"]
log = logging.getLogger("assetrag.vectors")
_CREATE_SETTLE_ATTEMPTS = 50
# How long a process trusts what it last read of a collection (name, model, dimension): a
# submit then costs no Milvus round trip. A collection dropped elsewhere is seen this late at
# most, and the worker that runs the job checks again.
DESCRIBE_TTL_S = 5.0


class Collections(Connection):
    """Collections by name: an alias (the version it names answers) or a version's own."""

    def __init__(self, uri: str, marks: WriteMarks | None = None) -> None:
        super().__init__(uri, marks)
        # name -> (when read, what it is, the version collection it names)
        self._described: dict[str, tuple[float, CollectionInfo, str]] = {}

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
            if not index_being_written(exc):
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
        retry=tenacity.retry_if_exception(index_being_written),
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
            if is_not_found(exc):
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

    def count(self, name: str, version: int | None = None) -> int:
        # count(*) without a filter is exact and counts each upserted primary key once.
        target = name if version is None else self._target(name, version)
        fresh = self._fresh(name)
        rows = self._call(
            name,
            lambda: self._client.query(target, filter="", output_fields=["count(*)"], **fresh),
        )
        return int(rows[0]["count(*)"])

    def _call(self, name: str, fn: Any) -> Any:
        """Runs one Milvus call. A collection that a server restart left unloaded is loaded
        and the call made again; "no such collection" becomes CollectionNotFound."""
        try:
            return fn()
        except _pymilvus().MilvusException as exc:
            if not is_not_loaded(exc):
                raise translated(name, exc) from exc
        log.info("collection %s is not loaded (the server restarted?); loading it", name)
        self._described.pop(name, None)
        self._load(name)
        try:
            return fn()
        except _pymilvus().MilvusException as exc:
            raise translated(name, exc) from exc
