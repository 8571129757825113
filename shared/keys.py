"""Every Redis key the service uses, under one prefix; nothing else spells a key."""

from __future__ import annotations

import hashlib

PREFIX = "assetrag"

EVENTS_PATTERN = f"{PREFIX}:events:*"
WORKER_PATTERN = f"{PREFIX}:worker:*"
BLOB_EXPIRY = f"{PREFIX}:blob-expiry"
# Jobs not yet terminal, scored by their last sign of life (the watchdog's worklist).
ACTIVE_JOBS = f"{PREFIX}:jobs:active"
# The newest write to each collection on a Milvus server (server time, ms): read-your-writes.
COLLECTION_WRITES = f"{PREFIX}:collection-writes"
# Single-flight lock for the fleet's watchdog round.
WATCHDOG_LOCK = f"{PREFIX}:watchdog"
# Jobs waiting on a Gemini batch (their poller's worklist), and its single-flight lock.
GEMINI_BATCHES = f"{PREFIX}:gemini:batches"
BATCH_POLL_LOCK = f"{PREFIX}:gemini:batch-poll"
# Ended jobs whose webhook is due, scored by when its next attempt is due.
WEBHOOKS_DUE = f"{PREFIX}:webhooks:due"
# Celery's broker keys (kombu's Redis transport): messages taken by a worker, not yet acked.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def job_errors(job_id: str) -> str:
    return f"{job(job_id)}:errors"


def job_batches(job_id: str) -> str:
    """Ids of the batches a job has counted, so a redelivered batch counts once."""
    return f"{job(job_id)}:batches"


def job_assets(job_id: str) -> str:
    return f"{job(job_id)}:assets"


def job_pairs(job_id: str) -> str:
    """A duplicates job's similar pairs, as its batches find them."""
    return f"{job(job_id)}:pairs"


def job_clusters(job_id: str) -> str:
    """A duplicates job's clusters, largest first (its result pages through them)."""
    return f"{job(job_id)}:clusters"


def job_items(job_id: str) -> str:
    """A generate job's items as recorded: item index → what it came to (JSON: its result,
    errors, the images it hands on to be saved, its attempts and usage)."""
    return f"{job(job_id)}:items"


def job_claims(job_id: str) -> str:
    """Generate items sent to Gemini: item index → attempts so far."""
    return f"{job(job_id)}:claims"


def job_batch(job_id: str) -> str:
    """A batch-mode generate job's Gemini batch: its name, item references, state."""
    return f"{job(job_id)}:batch"


def reindex(collection: str) -> str:
    """The re-index building a collection's next version (by its stored name), if any."""
    return f"{PREFIX}:reindex:{collection}"


REINDEX_PATTERN = reindex("*")


def reindex_lock(collection: str) -> str:
    """Held while a collection's re-index mark and the version it names change together."""
    return f"{PREFIX}:reindex-lock:{collection}"


def job_work(job_id: str) -> str:
    """The job's outstanding work: work id → the task carrying it and who started it."""
    return f"{job(job_id)}:work"


def job_parts(job_id: str) -> list[str]:
    """Every key that lives and expires with a job."""
    return [
        job(job_id),
        job_errors(job_id),
        job_batches(job_id),
        job_assets(job_id),
        job_work(job_id),
        job_pairs(job_id),
        job_clusters(job_id),
        job_items(job_id),
        job_batch(job_id),
        job_claims(job_id),
    ]


def job_index(tenant: str | None) -> str:
    """Jobs by creation time, one index per tenant so a tenant's list never scans another's."""
    return f"{PREFIX}:jobs:{tenant or '-'}"


def events(job_id: str) -> str:
    return f"{PREFIX}:events:{job_id}"


def job_id_of_events(channel: str) -> str:
    return channel.removeprefix(f"{PREFIX}:events:")


def upload(upload_id: str) -> str:
    return f"{PREFIX}:upload:{upload_id}"


def model_dimension(model_id: str) -> str:
    return f"{PREFIX}:model:{model_id}"


def worker(hostname: str) -> str:
    return f"{PREFIX}:worker:{hostname}"


def worker_held(hostname: str) -> str:
    """Delivery tags of the task messages a worker holds (running or reserved)."""
    return f"{PREFIX}:held:{hostname}"


HELD_PATTERN = f"{PREFIX}:held:*"


def idempotency(tenant: str | None, key: str) -> str:
    # Hashed: a client's key may hold anything, and tenants must not collide.
    digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
    return f"{PREFIX}:idempotency:{digest}"


def gemini_rpm(name: str) -> str:
    return f"{PREFIX}:gemini:rpm:{name}"


def rate_limit(caller: str) -> str:
    return f"{PREFIX}:ratelimit:{caller}"


def kit(tenant: str | None, name: str) -> str:
    """A kit's versions (hash: version → JSON, plus "latest" and "deleted")."""
    return f"{PREFIX}:kit:{tenant or '-'}:{name}"


def kits(tenant: str | None) -> str:
    """The names of a tenant's kits (deleted ones leave it)."""
    return f"{PREFIX}:kits:{tenant or '-'}"
