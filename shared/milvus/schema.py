"""What a collection stores: its fields, the bookkeeping it carries, and the row of an asset.

Kept apart from the gateway (shared/milvus/gateway.py) so the shape is read in one place. Every
version of a collection is made from `schema()`; whether it has the keyword fields is fixed
when it is made (Milvus Lite cannot add a field later), and recorded in its bookkeeping.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

from pydantic import BaseModel, Field

from shared import contract

# Collection properties survive a restart on Milvus Lite and a server alike; the schema's
# description is dropped by Lite, so our bookkeeping lives in a property.
METADATA_PROPERTY = "assetrag.meta"
HNSW_BUILD = {"M": 16, "efConstruction": 200}
# VARCHAR's ceiling is 65,535 bytes; a longer keyword text is cut (UTF-8: 4 bytes a char).
KEYWORD_TEXT_MAX = 16_000
STORED_FIELDS = [
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
# A collection's versions: <name>__v<n>; user names never hold a double underscore.
_SEPARATORS = re.compile(r"[\W_]+")
VERSION_RE = re.compile(r"^(?P<base>.+)__v(?P<number>[1-9][0-9]{0,5})$")


def version_name(name: str, number: int) -> str:
    return f"{name}__v{number}"


def base_name(physical: str) -> str:
    match = VERSION_RE.fullmatch(physical)
    return match["base"] if match else physical


class Bookkeeping(BaseModel):
    """What a version of a collection records about itself (in its properties)."""

    model: str
    dimension: int
    metric: str = "COSINE"
    created_at: float = Field(default_factory=time.time)
    # Made before versions existed: version 1, without keyword fields.
    version: int = 1
    keyword: bool = False

    def dump(self) -> str:
        return self.model_dump_json()

    @classmethod
    def of(cls, description: dict[str, Any]) -> Bookkeeping:
        """From describe_collection: properties first, then the description (a server keeps
        a second copy there)."""
        raw = (description.get("properties") or {}).get(METADATA_PROPERTY) or description.get(
            "description"
        )
        if not raw:
            raise KeyError("collection has no assetrag metadata")
        meta = json.loads(raw)
        if not isinstance(meta, dict) or "model" not in meta or "dimension" not in meta:
            raise ValueError("collection metadata is not assetrag's")
        return cls.model_validate(meta)

    def info(self, name: str, count: int | None = None) -> contract.CollectionInfo:
        return contract.CollectionInfo(
            name=name,
            model=self.model,
            dimension=self.dimension,
            metric=self.metric,
            count=count,
            created_at=self.created_at,
            version=self.version,
            keyword_search=self.keyword,
        )


@cache
def pymilvus() -> ModuleType:
    """pymilvus, imported on first use: it pulls in pandas, which would add ~0.4 s to the
    API's start-up."""
    import pymilvus

    from shared.logs import adopt_loggers

    adopt_loggers("pymilvus")  # its import installs a text handler of its own
    return pymilvus


def schema(book: Bookkeeping) -> Any:
    mv = pymilvus()
    DataType = mv.DataType  # noqa: N806 (pymilvus' own name)
    made = mv.MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=book.dump()
    )
    made.add_field("asset_id", DataType.VARCHAR, is_primary=True, max_length=64)
    made.add_field("vector", DataType.FLOAT_VECTOR, dim=book.dimension)
    made.add_field("filename", DataType.VARCHAR, max_length=1024)
    made.add_field("source", DataType.VARCHAR, max_length=2048)
    made.add_field("content_key", DataType.VARCHAR, max_length=256)
    made.add_field("mime_type", DataType.VARCHAR, max_length=128)
    made.add_field("width", DataType.INT32)
    made.add_field("height", DataType.INT32)
    made.add_field("metadata", DataType.JSON)
    made.add_field("created_at", DataType.DOUBLE)
    if book.keyword:
        # BM25 over the asset's words: Milvus tokenizes `text` and fills `sparse` itself.
        made.add_field("text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True)
        made.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        made.add_function(
            mv.Function(
                name="bm25",
                function_type=mv.FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
    return made


def index_params(client: Any, book: Bookkeeping) -> Any:
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type=book.metric, params=HNSW_BUILD)
    if book.keyword:
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return index


def _words(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _words(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _words(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def keyword_text(filename: str, metadata: dict[str, Any]) -> str:
    """What BM25 searches: the filename whole and cut into its words, then every metadata
    value, caption and tags included, nested values and lists flattened.

    Milvus' standard analyzer keeps `img_003.png` as one token (Unicode word rules join
    letters across `_` and `.`), so the cut copy lets `003` or `img` find it too."""
    parts = [filename, _SEPARATORS.sub(" ", filename), *_words(metadata)]
    return " ".join(part for part in parts if part)[:KEYWORD_TEXT_MAX]
