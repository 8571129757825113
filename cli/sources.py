"""The reference sources `assetrag generate` builds from its options: photos uploaded as
subjects, searches (`--item "gold watch:2"`, `:N` its top_k), named assets, one base."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from shared.contract import ReferenceSource

DEFAULT_TOP_K = 1  # an --item is one thing to include: its best hit, unless :N says more


def parse_item(text: str) -> tuple[str, int]:
    """`"gold watch:2"` → ("gold watch", 2); a colon not followed by a number stays text."""
    query, sep, tail = text.rpartition(":")
    if sep and tail.strip().isdigit() and query.strip():
        return query.strip(), int(tail)
    return text.strip(), DEFAULT_TOP_K


class Sources(BaseModel):
    references: list[ReferenceSource]


@dataclass
class SourceOptions:
    """What the command line said about references, before any upload."""

    subjects: list[Path] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    base: str | None = None
    query: str | None = None
    top_k: int = 3

    @property
    def given(self) -> bool:
        return bool(
            self.subjects or self.items or self.refs or self.styles or self.base or self.query
        )

    def request(self, upload_ids: list[str]) -> Sources:
        return Sources(references=self.sources(upload_ids))

    def sources(self, upload_ids: list[str]) -> list[ReferenceSource]:
        """In the order the prompt will name them (the service puts base and subjects
        first): `upload_ids` are the uploaded subjects', in order."""
        sources = []
        if self.base is not None:
            sources.append(ReferenceSource(asset_ids=[self.base], role="base"))
        sources += [
            ReferenceSource(upload_id=upload_id, role="subject", label=path.stem)
            for path, upload_id in zip(self.subjects, upload_ids, strict=True)
        ]
        for text in self.items:
            query, top_k = parse_item(text)
            sources.append(ReferenceSource(query=query, top_k=top_k, label=query))
        if self.query is not None:
            sources.append(ReferenceSource(query=self.query, top_k=self.top_k))
        if self.refs:
            sources.append(ReferenceSource(asset_ids=list(self.refs)))
        if self.styles:
            sources.append(ReferenceSource(asset_ids=list(self.styles), role="style"))
        return sources
