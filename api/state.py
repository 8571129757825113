"""The API process's dependencies, opened once in the lifespan and closed with it."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from api.events import JobEvents
from shared.blobs import BlobStore, open_blob_store
from shared.health import WorkerHeartbeat
from shared.jobs import JobStore
from shared.models import ModelRegistry
from shared.settings import Settings
from shared.sources import UploadRegistry
from shared.tasks import TaskQueue, make_celery
from shared.vectors import VectorStore


@dataclass
class AppState:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    vectors: VectorStore
    blobs: BlobStore
    uploads: UploadRegistry
    queue: TaskQueue
    models: ModelRegistry
    heartbeat: WorkerHeartbeat
    events: JobEvents

    @classmethod
    def open(cls, settings: Settings) -> AppState:
        client = redis.Redis.from_url(settings.redis_url)
        blobs = open_blob_store(settings.resolved_blob_uri)
        return cls(
            settings=settings,
            redis=client,
            jobs=JobStore(client, settings.job_ttl_s),
            vectors=VectorStore(settings.resolved_milvus_uri),
            blobs=blobs,
            uploads=UploadRegistry(client, blobs, settings.upload_ttl_s),
            queue=TaskQueue(make_celery(settings)),
            models=ModelRegistry(client),
            heartbeat=WorkerHeartbeat(client),
            events=JobEvents(settings.redis_url),
        )

    def close(self) -> None:
        self.queue.close()
        self.vectors.close()
        self.redis.close()
