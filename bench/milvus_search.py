"""Search latency of Milvus Lite (through `milvus-lite server`) by index and flush state.

Side by side, for each size: rows left in the memtable (never flushed: brute force),
flushed segments with a BRUTE_FORCE index, and flushed segments with HNSW; each measured for
single queries (one call per query) and batched queries (one call for all of them). Also
times what the gateway pays per embed batch: an upsert of 32 rows, then a flush.

    .venv/bin/python bench/milvus_search.py --sizes 10000,100000 --dim 512 --queries 200
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

LOAD_BATCH = 2000


@contextmanager
def milvus_server(data_dir: Path, max_workers: int) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("milvus-lite")
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-workers",
            str(max_workers),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_for(port)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("milvus-lite server did not start")


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def create(client: MilvusClient, name: str, dim: int, index_type: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("asset_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 200} if index_type == "HNSW" else {}
    index.add_index("vector", index_type=index_type, metric_type="COSINE", params=params)
    client.create_collection(name, schema=schema, index_params=index)


def load_rows(client: MilvusClient, name: str, vectors: np.ndarray, start: int = 0) -> None:
    for lo in range(0, len(vectors), LOAD_BATCH):
        chunk = vectors[lo : lo + LOAD_BATCH]
        rows = [
            {"asset_id": f"a{start + lo + i}", "vector": v.tolist(), "metadata": {"i": lo + i}}
            for i, v in enumerate(chunk)
        ]
        client.insert(name, rows)


def percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    client: MilvusClient, name: str, queries: np.ndarray, top_k: int, max_single: int | None = None
) -> dict[str, float]:
    def one(q: np.ndarray) -> object:
        return client.search(name, data=[q.tolist()], limit=top_k, output_fields=["metadata"])

    one(queries[0])  # warm caches and lazy index loads
    single = [timed(lambda q=q: one(q)) for q in queries[:max_single]]
    batch_data = queries.tolist()
    batch = [
        timed(lambda: client.search(name, data=batch_data, limit=top_k, output_fields=["metadata"]))
        for _ in range(3)
    ]
    s50, s99 = percentiles(single)
    b50, b99 = percentiles(batch)
    return {
        "single_p50": s50,
        "single_p99": s99,
        "batch_p50": b50,
        "batch_p99": b99,
        "batch_per_query": b50 / len(queries),
    }


def recall_at_1(client: MilvusClient, name: str, vectors: np.ndarray, n: int = 100) -> float:
    picks = np.arange(0, len(vectors), max(1, len(vectors) // n))[:n]
    res = client.search(name, data=vectors[picks].tolist(), limit=1)
    found = [hits[0]["asset_id"] == f"a{i}" for hits, i in zip(res, picks, strict=True)]
    return float(np.mean(found))


def rebuild_indexes(client: MilvusClient, name: str) -> float:
    # Flushed segments get their index from a background thread, which writes the index file
    # in place: a load that reads it mid-write fails, so retry until that thread is done.
    start = time.perf_counter()
    for _ in range(600):
        try:
            client.release_collection(name)
            client.load_collection(name)
            break
        except MilvusException:
            time.sleep(0.5)
    return time.perf_counter() - start


def embed_batch_cost(
    client: MilvusClient, name: str, rng: np.random.Generator, dim: int, start: int
) -> tuple[float, float]:
    rows = [
        {"asset_id": f"b{start + i}", "vector": v.tolist(), "metadata": {}}
        for i, v in enumerate(unit_vectors(rng, 32, dim))
    ]
    upsert_s = timed(lambda: client.upsert(name, rows))
    flush_s = timed(lambda: client.flush(name))
    return upsert_s * 1000, flush_s * 1000


def bench_size(uri: str, size: int, dim: int, n_queries: int, top_k: int) -> list[str]:
    rng = np.random.default_rng(size)
    vectors = unit_vectors(rng, size, dim)
    queries = vectors[rng.choice(size, n_queries, replace=False)]
    client = MilvusClient(uri=uri)
    lines = []
    for index_type in ("BRUTE_FORCE", "HNSW"):
        name = f"b_{index_type.lower()}_{size}"
        start = time.perf_counter()
        create(client, name, dim, index_type)
        load_rows(client, name, vectors)
        t_load = time.perf_counter() - start
        if index_type == "HNSW":  # the memtable state is the same whatever the index
            lines.append(
                row(
                    size,
                    "none (memtable)",
                    "no",
                    measure(client, name, queries, top_k, max_single=20),
                    recall_at_1(client, name, vectors),
                    f"20 single queries; insert {t_load:.1f}s",
                )
            )
        start = time.perf_counter()
        client.flush(name)
        t_flush = time.perf_counter() - start
        t_build = rebuild_indexes(client, name)
        up_ms, fl_ms = embed_batch_cost(client, name, rng, dim, 0)
        lines.append(
            row(
                size,
                index_type,
                "yes",
                measure(client, name, queries, top_k),
                recall_at_1(client, name, vectors),
                f"flush {t_flush:.1f}s build {t_build:.1f}s; +32 rows: upsert "
                f"{up_ms:.0f}ms flush {fl_ms:.0f}ms",
            )
        )
        client.drop_collection(name)
    client.close()
    return lines


HEADER = (
    f"{'rows':>7} | {'index':<16}| {'flushed':<7}| {'1q p50':>7} {'1q p99':>7} | "
    f"{'batch p50':>9} {'p99':>8} {'per q':>6} | {'r@1':>4} | notes"
)


def row(size: int, index: str, flushed: str, m: dict[str, float], recall: float, notes: str) -> str:
    return (
        f"{size:>7} | {index:<16}| {flushed:<7}| {m['single_p50']:>7.2f} "
        f"{m['single_p99']:>7.2f} | {m['batch_p50']:>9.1f} {m['batch_p99']:>8.1f} "
        f"{m['batch_per_query']:>6.2f} | {recall:>4.2f} | {notes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument(
        "--max-workers",
        type=int,
        default=1,
        help="server thread pool; >1 is unsafe for concurrent writers",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(
        f"dim={args.dim} queries={args.queries} top_k={args.top_k}; latencies in ms "
        f"(batch = one search call carrying all {args.queries} queries)"
    )
    print(HEADER)
    for size in sizes:
        data_dir = Path(tempfile.mkdtemp(prefix="milvus_bench_"))
        try:
            with milvus_server(data_dir, args.max_workers) as uri:
                for line in bench_size(uri, size, args.dim, args.queries, args.top_k):
                    print(line, flush=True)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
