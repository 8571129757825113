"""Which collections are being re-indexed, and into what: a mark in Redis per collection.

While a re-index builds version n+1 from the originals, writes keep landing in version n;
every writer reads the mark before it writes and writes version n+1 too (with its model),
so nothing stored during the job is missing from the version swapped in. The re-index's
last step compares the two versions before the swap for writes that raced the mark. After
the swap the mark stays a while (`GRACE_S`): a writer that read the collection just before
the swap still writes the new version as well. A mark whose job ended without a swap
(failed, cancelled, abandoned, expired) counts for nothing from that moment, and is
`stopped`: workers/reindex.py drops the version it names and lifts it, under the
collection's `lock`, which the plan (mark and version made) and the swap hold too, so a
version is never dropped while it is being made or swapped in.
"""

from __future__ import annotations

import redis
from pydantic import BaseModel
from redis.lock import Lock

from shared import keys
from shared.contract import ACTIVE_STATES, JobState
from shared.jobs.store import JobStore

GRACE_S = 600
# A re-index job in these states still builds its version (a cancelling one finishes the
# work it started).
LIVE_STATES = ACTIVE_STATES | {JobState.cancelling}
# Longer than any step taken under a collection's lock (making a version on a server takes
# seconds), so a holder that died frees it.
LOCK_TIMEOUT_S = 120


class ReindexMark(BaseModel):
    job_id: str
    model: str
    version: int
    from_version: int
    from_model: str = ""
    swapped: bool = False


class ReindexMarks:
    def __init__(self, client: redis.Redis, jobs: JobStore) -> None:
        self.redis = client
        self.jobs = jobs

    def begin(self, collection: str, mark: ReindexMark) -> ReindexMark:
        """Marks the collection (by its stored name) unless another re-index is building
        it; answers the mark that holds, so a second re-index finds the first and a
        redelivered plan finds its own."""
        key = keys.reindex(collection)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    held = self.running(collection)
                    if held is not None:
                        pipe.unwatch()
                        return held
                    pipe.multi()
                    pipe.set(key, mark.model_dump_json())
                    pipe.execute()
                    return mark
                except redis.WatchError:
                    continue

    def _get(self, collection: str) -> ReindexMark | None:
        raw = self.redis.get(keys.reindex(collection))
        return None if raw is None else ReindexMark.model_validate_json(raw)

    def _alive(self, mark: ReindexMark) -> bool:
        return self.job_alive(mark.job_id)

    def job_alive(self, job_id: str) -> bool:
        """The job has not ended (a cancelling one still finishes its started work)."""
        return self.jobs.state(job_id) in LIVE_STATES

    def lock(self, collection: str, wait_s: float = LOCK_TIMEOUT_S) -> Lock:
        """The collection's re-index lock (`with` it; LockError when not had in `wait_s`)."""
        return self.redis.lock(
            keys.reindex_lock(collection), timeout=LOCK_TIMEOUT_S, blocking_timeout=wait_s
        )

    def marked(self) -> list[str]:
        """Every collection (by its stored name) that carries a mark."""
        prefix = keys.reindex("")
        found = self.redis.scan_iter(match=keys.REINDEX_PATTERN, count=100)
        return sorted(name.decode().removeprefix(prefix) for name in found)

    def running(self, collection: str) -> ReindexMark | None:
        """The re-index still building this collection's next version, if any."""
        mark = self._get(collection)
        return mark if mark is not None and not mark.swapped and self._alive(mark) else None

    def stopped(self, collection: str) -> ReindexMark | None:
        """The mark of a re-index that ended without its swap, if the collection has one."""
        mark = self._get(collection)
        return mark if mark is not None and not (mark.swapped or self._alive(mark)) else None

    def for_writers(self, collection: str) -> ReindexMark | None:
        """The version a writer must write as well: one being built, or one just swapped in."""
        mark = self._get(collection)
        if mark is None or not (mark.swapped or self._alive(mark)):
            return None
        return mark

    def swapped(self, collection: str, job_id: str) -> None:
        mark = self._get(collection)
        if mark is not None and mark.job_id == job_id:
            done = mark.model_copy(update={"swapped": True})
            self.redis.set(keys.reindex(collection), done.model_dump_json(), ex=GRACE_S)

    def end(self, collection: str, job_id: str) -> None:
        """Lifts a job's mark (a re-index that stopped short), never another job's."""
        mark = self._get(collection)
        if mark is not None and mark.job_id == job_id and not mark.swapped:
            self.redis.delete(keys.reindex(collection))
