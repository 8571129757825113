"""Reaching Milvus: the URI forms we take, the in-process Milvus Lite server, one client
opened on first use, whether it is Milvus Lite or a server (and so has BM25), and the read
options under which a server answers with every write noted so far.

- A local Milvus Lite "file" is a directory. pymilvus only routes URIs ending in ``.db`` to
  milvus-lite, so for any other local path we start the in-process gRPC server ourselves via
  ``milvus_lite.server_manager`` (which is what pymilvus does for ``.db``). The directory is
  locked by one process; other processes must share it through ``milvus-lite server``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlparse

from shared.milvus.errors import VectorStoreUnavailable
from shared.milvus.schema import base_name
from shared.milvus.schema import pymilvus as _pymilvus
from shared.milvus.write_marks import WriteMarks

if TYPE_CHECKING:
    from pymilvus import MilvusClient

_REMOTE_SCHEMES = ("http", "https", "tcp", "unix")
# pymilvus pings every 10 s even when idle; the Milvus Lite server keeps gRPC's default of at
# most one ping per 5 minutes without calls and answers GOAWAY "too_many_pings". Ping only
# during calls, and rarely.
_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": 0,
}


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


def _at_least(server_version: str, wanted: tuple[int, int]) -> bool:
    match = re.match(r"v?(\d+)\.(\d+)", server_version)
    return match is not None and (int(match[1]), int(match[2])) >= wanted


class Connection:
    """Connects on first use, so a process starts (and reports Milvus in /readyz) even while
    Milvus is down."""

    def __init__(self, uri: str, marks: WriteMarks | None = None) -> None:
        self.uri = uri
        self.marks = marks
        self._lock = threading.Lock()
        self._milvus: MilvusClient | None = None
        self._lite = True
        self._bm25 = True

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

    def ping(self) -> None:
        self._client.get_server_version(timeout=5)

    def close(self) -> None:
        if self._milvus is not None:
            self._milvus.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
