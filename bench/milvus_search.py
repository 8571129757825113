"""Search at library scale: the latency curve on Milvus Lite and on a Milvus server, side by
side in one run, and what each of the project's levers buys on Milvus Lite.

For each backend (Milvus Lite's gRPC server as `assetrag up` runs it; Milvus 2.3.5
standalone, the `milvus` package, in a network namespace) one collection of 512-d random unit
vectors grows in place through the service's own gateway (`VectorStore.upsert`, 5,000 rows a
call, so Lite gets one segment per call and the server seals segments itself). At each size,
after the indexes are built:

- one query per call through the gateway (what a search job pays), p50 / p99;
- 8 and 32 queries in one call, per query (the per-call cost is paid once);
- with `--api`: the search round trip through the whole service (`POST /v1/jobs/search?wait`,
  a text query, with a tiny 512-d CLIP so encoding costs ~1 ms and Milvus dominates).

`--levers` adds, on Milvus Lite at 30,000 rows: segments of 32 rows (one per embed batch,
flushed as written) against 5,000; output fields fetched with the hits against none; and a
partition key (10 tenants in one collection, searched filtered to one) against a tenant's own
collection (what the service does: TenantVectors).

    .venv/bin/python bench/milvus_search.py [--sizes 10000,100000] [--million] [--api] [--levers]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import describe, scratch  # noqa: E402
from cli.stack import Stack  # noqa: E402
from shared.milvus.gateway import VectorStore  # noqa: E402
from tests.support.clip_checkpoint import build_tiny_checkpoint  # noqa: E402
from tests.support.milvus_server import start_milvus_server  # noqa: E402
from tests.support.vectors import records, unit_vectors  # noqa: E402

DIM = 512
CHUNK = 5000
COLLECTION = "curve"


@contextmanager
def lite_server(data_dir: Path) -> Iterator[tuple[str, int]]:
    """The Milvus Lite server alone, started as `assetrag up` starts it: its URI and pid."""
    server = Stack(env={"ASSETRAG_MILVUS_URI": str(data_dir)}, log_dir=data_dir.parent / "logs")
    try:
        server.start_milvus()
        yield server.env["ASSETRAG_MILVUS_URI"], server.procs["milvus"].pid
    finally:
        server.stop()


@contextmanager
def milvus_server(base: Path) -> Iterator[tuple[str, int]]:
    server = start_milvus_server(base)
    try:
        yield server.uri, server.proc.pid
    finally:
        server.stop()


def quiet(pid: int, timeout_s: float = 900) -> float:
    """Until the server (and its children) stop working in the background: merges, index
    builds. Seconds waited."""
    started = time.perf_counter()
    root = psutil.Process(pid)
    while time.perf_counter() - started < timeout_s:
        tree = [root, *root.children(recursive=True)]
        before = sum(sum(proc.cpu_times()[:2]) for proc in tree)
        time.sleep(2)
        if sum(sum(proc.cpu_times()[:2]) for proc in tree) - before < 0.1:  # < 5 % of a core
            break
    return time.perf_counter() - started


def settle(store: VectorStore, name: str, pid: int) -> float:
    """Until every row is under the index; seconds waited. A server seals what is growing
    once (a deployment seals by size and age) and builds indexes after."""
    if not store.is_lite:
        store._client.flush(name)
    return quiet(pid)


def grow(store: VectorStore, name: str, rng: np.random.Generator, have: int, want: int) -> float:
    """Rows have..want added through the gateway; rows/s."""
    started = time.perf_counter()
    for start in range(have, want, CHUNK):
        count = min(CHUNK, want - start)
        store.upsert(name, records(unit_vectors(rng, count, DIM), start=start))
    return (want - have) / (time.perf_counter() - started)


def latencies(call: Callable[[], Any], times: int) -> list[float]:
    call()  # warm
    measured = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        measured.append((time.perf_counter() - started) * 1000)
    return sorted(measured)


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def gateway_row(store: VectorStore, name: str, queries: np.ndarray, n: int) -> dict[str, float]:
    single = latencies(lambda: store.search(name, queries[:1], 10), n)
    row = {"1q p50": p(single, 0.5), "1q p99": p(single, 0.99)}
    for batch in (8, 32):
        per_call = latencies(lambda b=batch: store.search(name, queries[:b], 10), max(5, n // 5))
        row[f"{batch}q/call, per q"] = statistics.median(per_call) / batch
    return row


def api_row(port: int, n: int) -> dict[str, float]:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    words = ["red", "silk", "shawl", "gold", "boot", "castle", "blue"]
    counter = iter(range(10**9))

    def search() -> None:
        text = f"{words[next(counter) % len(words)]} {next(counter)}"  # never a cache hit
        body = {"collection": COLLECTION, "queries": [{"text": text}], "top_k": 10}
        answer = client.post("/v1/jobs/search", params={"wait": 10}, json=body)
        assert answer.status_code == 200 and answer.json()["state"] == "completed", answer.text

    measured = latencies(search, n)
    client.close()
    return {"API p50": p(measured, 0.5), "API p99": p(measured, 0.99)}


@contextmanager
def api_stack(base: Path, uri: str, checkpoint: Path, wanted: bool) -> Iterator[Stack | None]:
    """With `wanted`, the service on that Milvus (its data and logs under base, a private
    redis-server), ready, for the with block."""
    if not wanted:
        yield None
        return
    env = {
        "ASSETRAG_MILVUS_URI": uri,
        "ASSETRAG_CLIP_MODEL": str(checkpoint),
        "ASSETRAG_DEVICE": "cpu",
    }
    with Stack.under(base, env).running(ready_timeout_s=300) as stack:
        yield stack


def curve(backend: str, uri: str, pid: int, sizes: list[int], n: int, api: Stack | None) -> None:
    store = VectorStore(uri)
    store.ensure_collection(COLLECTION, DIM, str(api.settings().clip_model) if api else "bench")
    rng = np.random.default_rng(7)
    queries = unit_vectors(np.random.default_rng(99), 32, DIM)
    have = 0
    for size in sizes:
        rate = grow(store, COLLECTION, rng, have, size)
        waited = settle(store, COLLECTION, pid)
        have = size
        row = gateway_row(store, COLLECTION, queries, n)
        if api is not None:
            row |= api_row(api.port, n)
        cells = "  ".join(f"{k} {v:7.2f}" for k, v in row.items())
        print(f"{backend:<7} {size:>9,}  {cells}   (load {rate:,.0f} rows/s, settle {waited:.0f}s)")
    store.close()


def levers(base: Path, n: int) -> None:
    """Milvus Lite at 30,000 rows: segment size, output fields, partition key."""
    rng = np.random.default_rng(3)
    queries = unit_vectors(np.random.default_rng(98), 1, DIM)
    with lite_server(base / "levers") as (uri, pid):
        store = VectorStore(uri)
        for name, chunk in (("seg5000", CHUNK), ("seg32", 32)):
            store.ensure_collection(name, DIM, "bench")
            vectors = unit_vectors(rng, 30_000, DIM)
            for start in range(0, 30_000, chunk):
                store.upsert(name, records(vectors[start : start + chunk], start=start))
            quiet(pid)  # background merges and index builds
            found = latencies(lambda nm=name: store.search(nm, queries, 10), n)
            print(f"lite 30,000  segments of {chunk:>5} rows: 1q p50 {p(found, 0.5):7.2f} ms")
        client = store._client
        bare = latencies(lambda: client.search("seg5000", data=queries.tolist(), limit=10), n)
        print(f"lite 30,000  no output fields (ids, scores): 1q p50 {p(bare, 0.5):7.2f} ms")
        partition_key(client, pid, rng, queries, n)
        store.close()


def partition_key(
    client: Any, pid: int, rng: np.random.Generator, queries: np.ndarray, n: int
) -> None:
    from pymilvus import DataType, MilvusClient

    def create(name: str, keyed: bool) -> None:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("asset_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("tenant", DataType.VARCHAR, max_length=32, is_partition_key=keyed)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="COSINE")
        client.create_collection(name, schema=schema, index_params=index)

    create("keyed", True)
    create("own", False)
    vectors = unit_vectors(rng, 30_000, DIM)
    for start in range(0, 30_000, CHUNK):
        rows = [
            {"asset_id": f"k{start + i}", "tenant": f"t{(start + i) % 10}", "vector": v.tolist()}
            for i, v in enumerate(vectors[start : start + CHUNK])
        ]
        client.upsert("keyed", rows)
        client.flush("keyed")
        client.upsert("own", [r for r in rows if r["tenant"] == "t3"])
        client.flush("own")
    quiet(pid)
    data = queries.tolist()
    keyed = latencies(
        lambda: client.search("keyed", data=data, limit=10, filter='tenant == "t3"'), n
    )
    own = latencies(lambda: client.search("own", data=data, limit=10), n)
    print(
        f"lite 30,000  10 tenants, partition key, filtered to one: 1q p50 {p(keyed, 0.5):7.2f} ms;"
        f" that tenant's own collection (3,000 rows): {p(own, 0.5):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 rows")
    parser.add_argument("--backends", default="lite,milvus")
    parser.add_argument("--queries", type=int, default=100, help="single queries per size")
    parser.add_argument("--api", action="store_true", help="the round trip through the service")
    parser.add_argument("--levers", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s) + (
        [1_000_000] if args.million else []
    )
    print(f"machine: {describe()}")
    print(f"{DIM}-d unit vectors, HNSW (M 16, efConstruction 200, ef 64), top 10; ms")
    with scratch("assetrag-milvus-", args.keep) as base:
        checkpoint = build_tiny_checkpoint(base / "tiny512.pt", embed_dim=DIM)
        for backend in args.backends.split(","):
            opened = (
                lite_server(base / "lite") if backend == "lite" else milvus_server(base / "milvus")
            )
            with (
                opened as (uri, pid),
                api_stack(base / f"stack-{backend}", uri, checkpoint, args.api) as stack,
            ):
                curve(backend, uri, pid, sizes, args.queries, stack)
        if args.levers:
            levers(base, args.queries)


if __name__ == "__main__":
    main()
