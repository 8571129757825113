"""The clients every process needs (Redis, job store, Milvus, blob store, uploads, task queue),
opened from the settings in one place; the API's state and the workers' context extend it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from shared.blobs import BlobExpiry, BlobStore, open_blob_store
from shared.clip.registry import ModelRegistry
from shared.jobs.store import JobStore
from shared.kits import KitStore
from shared.milvus.gateway import VectorStore
from shared.milvus.reindexing import ReindexMarks
from shared.milvus.write_marks import WriteMarks
from shared.redis_client import connect
from shared.settings import Settings
from shared.sources import UploadRegistry
from shared.tasks import TaskQueue, make_celery


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    vectors: VectorStore
    blobs: BlobStore
    uploads: UploadRegistry
    expiry: BlobExpiry
    queue: TaskQueue
    models: ModelRegistry
    reindexing: ReindexMarks
    kits: KitStore

    @staticmethod
    def connect(settings: Settings) -> dict[str, Any]:
        """The constructor arguments of a Services (or subclass) for these settings."""
        client = connect(settings.redis_url)
        blobs = open_blob_store(settings)
        expiry = BlobExpiry(client, blobs)
        jobs = JobStore(client, settings.job_ttl_s)
        return {
            "settings": settings,
            "redis": client,
            "jobs": jobs,
            "vectors": VectorStore(settings.resolved_milvus_uri, WriteMarks(client)),
            "blobs": blobs,
            "uploads": UploadRegistry(client, blobs, settings.upload_ttl_s, expiry),
            "expiry": expiry,
            "queue": TaskQueue(make_celery(settings), client),
            "models": ModelRegistry(client),
            "reindexing": ReindexMarks(client, jobs),
            "kits": KitStore(client),
        }

    def close(self) -> None:
        self.queue.close()
        self.vectors.close()
        self.redis.close()
