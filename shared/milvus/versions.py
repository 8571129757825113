"""A collection's versions behind its alias: which collections and versions there are, the
next version made beside the current one, a collection from before versions adopted, the
alias swapped, a version or the whole collection dropped.

A collection is reached through an alias (``products``) naming its current version, a
collection of its own (``products__v2``); a re-index builds the next version beside it and
swaps the alias in one step. Checked on Milvus Lite 3.2 and Milvus 2.3.5: aliases work for
describe, load, upsert, get, query, search and count on both; ``describe_collection`` of an
alias answers the target's name and properties; dropping through an alias drops the target
on Lite and is refused by a server, so drops name versions. Lite 3.2 has no
``add_collection_field``, so keyword fields come with a new version. Collections made before
versions (a plain collection under its own name) keep working and are adopted as version 1
when first re-indexed.
"""

from __future__ import annotations

from shared.contract import CollectionInfo, CollectionVersion, ErrorCode
from shared.errors import Conflict
from shared.milvus.collections import Collections
from shared.milvus.errors import CollectionNotFound, VersionNotFound, shown
from shared.milvus.schema import VERSION_RE, Bookkeeping, base_name, version_name


def _is_version(physical: str, aliases: set[str]) -> bool:
    # A version's base is an alias; a plain collection that happens to end in __v<n> (a
    # tenant's collection named v2: t_x__v2) is not.
    return VERSION_RE.fullmatch(physical) is not None and base_name(physical) in aliases


class Versions(Collections):
    """Each collection an alias over its versions; `_described` keeps the version it names."""

    def _names(self) -> tuple[set[str], set[str]]:
        """Every collection and every alias."""
        collections = set(self._client.list_collections())
        aliases = set(self._client.list_aliases().get("aliases") or [])
        return collections, aliases

    def list_collections(self) -> list[CollectionInfo]:
        """One entry a collection (its versions hidden behind the alias)."""
        collections, aliases = self._names()
        listed = aliases | {c for c in collections if not _is_version(c, aliases)}
        infos = []
        for name in sorted(listed):
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
                f"version {version} answers for {shown(name)}; re-index to another first",
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
