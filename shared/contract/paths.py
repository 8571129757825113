"""Every path and URL of the v1 API that more than one side builds: the API's routes, the
URLs written into results, and the CLI's and web UI's calls all come from here.
"""

from __future__ import annotations

from enum import IntEnum

from shared.contract.jobs import JobKind

V1 = "/v1"
UPLOADS_PATH = f"{V1}/uploads"
JOBS_PATH = f"{V1}/jobs"
COLLECTIONS_PATH = f"{V1}/collections"
META_PATH = f"{V1}/meta"
KITS_PATH = f"{V1}/kits"


class ThumbnailSize(IntEnum):
    """Longest side of a thumbnail, in pixels."""

    small = 128
    medium = 256
    large = 512


THUMBNAIL_SIZES: tuple[int, ...] = tuple(ThumbnailSize)
DEFAULT_THUMBNAIL_SIZE = ThumbnailSize.medium
# A page's cursor is the created_at of the last job given.
CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"


def kit_path(ref: str) -> str:
    """A kit (GET, PUT, DELETE); `name@N` reads version N."""
    return f"{KITS_PATH}/{ref}"


def kit_versions_path(name: str) -> str:
    return f"{kit_path(name)}/versions"


def submit_path(kind: JobKind) -> str:
    return f"{JOBS_PATH}/{kind.value}"


def job_path(job_id: str) -> str:
    return f"{JOBS_PATH}/{job_id}"


def cancel_path(job_id: str) -> str:
    return f"{job_path(job_id)}/cancel"


def events_path(job_id: str) -> str:
    return f"{job_path(job_id)}/events"


def images_path(job_id: str) -> str:
    return f"{job_path(job_id)}/images"


def job_image_url(job_id: str, number: int) -> str:
    return f"{images_path(job_id)}/{number}"


def results_path(job_id: str) -> str:
    return f"{job_path(job_id)}/results"


def clusters_path(job_id: str) -> str:
    return f"{job_path(job_id)}/clusters"


def collection_path(name: str) -> str:
    return f"{COLLECTIONS_PATH}/{name}"


def versions_path(name: str) -> str:
    return f"{collection_path(name)}/versions"


def reindex_path(name: str) -> str:
    return f"{collection_path(name)}/reindex"


def assets_path(collection: str) -> str:
    return f"{collection_path(collection)}/assets"


def asset_url(collection: str, asset_id: str) -> str:
    """An asset's record (GET), and where it is deleted from its collection (DELETE)."""
    return f"{assets_path(collection)}/{asset_id}"


def asset_content_url(collection: str, asset_id: str) -> str:
    return f"{asset_url(collection, asset_id)}/content"


def lineage_url(collection: str, asset_id: str) -> str:
    """How an asset was made: the chain back to its originals."""
    return f"{asset_url(collection, asset_id)}/lineage"


def thumbnail_url(collection: str, asset_id: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> str:
    return f"{asset_url(collection, asset_id)}/thumbnail?size={size}"
