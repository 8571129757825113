"""Read-your-writes across processes on a Milvus server.

A Milvus server answers a read at "bounded" consistency by default: a write another process
made a moment ago is not visible yet (measured on Milvus 2.3.5: a search right after another
client's upsert missed it 20 times in 20), and "strong" consistency waits a full time tick
(~200 ms) on every read. So each write leaves a mark here, the time of the collection's
newest write; a read asks the server for data at least that new, which costs nothing once
the write is a time tick old. Milvus Lite is strongly consistent and needs no marks.
"""

from __future__ import annotations

import redis

from shared import keys


class WriteMarks:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def note(self, collection: str, written_ms: int) -> None:
        # GT: a mark only moves forward, whichever writer reports last.
        self.redis.zadd(keys.COLLECTION_WRITES, {collection: written_ms}, gt=True)

    def newest(self, collection: str) -> int | None:
        """The server time (ms) of the collection's newest write, if one was noted."""
        score = self.redis.zscore(keys.COLLECTION_WRITES, collection)
        return None if score is None else int(score)

    def forget(self, collection: str) -> None:
        self.redis.zrem(keys.COLLECTION_WRITES, collection)
