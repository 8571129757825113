"""Search latency: the API round trip against bare text encoding plus a direct Milvus search.

A real stack (Redis, Milvus Lite server, Celery workers, API) runs as separate processes.
The collection is filled fast, without embedding images: random unit vectors go straight in
with `VectorStore.upsert`, in chunks, through the Milvus Lite server the stack started, under
the model id the stack is configured with (so the API and the query worker accept it).
For each size (grown in place: 10k, then 90k more for 100k) it measures, one query at a time:

- API round trip: `POST /v1/jobs/search?wait=10` with one text query, top_k 10, until the
  finished job comes back (validate, enqueue, query worker: encode + search, long-poll);
- bare text encode: `ClipEncoder.encode_texts([q])` in this process;
- direct search: `VectorStore.search(collection, vec, 10)` on the same Milvus server;
- what the API does per search before enqueueing: `VectorStore.get_collection` (it counts);
- bare text encode over the full 77-token context (`full_context=True`, OpenAI's own pass),
  beside the truncated one the service runs.

Then, per size, the concurrent mode (`--clients 20`, 0 to skip): that many clients on
keep-alive connections each POST `/v1/jobs/search?wait=10` (one distinct text each time, so
the text cache never answers) for `--seconds`; searches/s, p50, p99. Beside it, in the same
run: the bare encoder's texts/s one text per call (what a worker encoding one query at a
time could reach at best) and in batches of `--clients` texts, just before and just after
the load, averaged.

    .venv/bin/python bench/search_latency.py --sizes 10000,100000 --queries 200
    .venv/bin/python bench/search_latency.py --tiny --sizes 2000 --queries 30   # quick check
    .venv/bin/python bench/search_latency.py --sizes 10000 --clients 20 --seconds 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Load, describe, http_load  # noqa: E402
from bench.cpu_profile import (  # noqa: E402
    ProcessProfile,
    Stages,
    cpu_seconds,
    stage_means,
    stage_totals,
)
from cli.stack import Stack, free_port, metrics_ports  # noqa: E402
from shared.clip.encoder import ClipEncoder  # noqa: E402
from shared.clip.torch_thread import TORCH_THREAD  # noqa: E402
from shared.milvus.gateway import VectorStore  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support.clip_checkpoint import build_tiny_checkpoint, build_vit_b32_checkpoint  # noqa: E402
from tests.support.processes import spawned_children  # noqa: E402
from tests.support.vectors import records, unit_vectors  # noqa: E402

COLLECTION = "bench_search"
QUIET_S = 0.02
TOP_K = 10
WORDS = (
    "red",
    "silk",
    "shawl",
    "gold",
    "trim",
    "leather",
    "boot",
    "castle",
    "dragon",
    "blue",
    "velvet",
    "armour",
    "studio",
    "shot",
    "sunset",
    "forest",
    "helmet",
    "neon",
    "jacket",
)


STAGES = "assetrag_search_stage_seconds"  # the query worker's stage histogram


def queries(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(n)]


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def pct(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def fill(
    store: VectorStore, rng: np.random.Generator, start: int, stop: int, dim: int, chunk: int
) -> float:
    """Upsert rows start..stop-1 as random unit vectors; returns seconds."""
    started = time.perf_counter()
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        vectors = unit_vectors(rng, hi - lo, dim)
        store.upsert(COLLECTION, records(vectors, start=lo))
    return time.perf_counter() - started


def settle(pid: int, timeout_s: float = 600, window_s: float = 2.0, busy: float = 0.1) -> float:
    """Wait until the Milvus server is idle (its background HNSW builds after the flushes are
    done), so they do not eat into the measured latencies; returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        if (cpu_seconds(pid) - before) / window_s < busy:
            break
    return time.perf_counter() - started


def api_search(client: httpx.Client, text: str) -> dict[str, Any]:
    response = client.post(
        "/v1/jobs/search",
        params={"wait": 10},
        json={
            "collection": COLLECTION,
            "queries": [{"text": text}],
            "top_k": TOP_K,
        },
    )
    job = response.json()
    if response.status_code != 200 or job.get("state") != "completed":
        raise RuntimeError(f"search did not finish within the wait: {response.status_code} {job}")
    if len(job["result"]["results"][0]) != TOP_K:
        raise RuntimeError(f"expected {TOP_K} hits: {job['result']}")
    return job


def measure(
    client: httpx.Client, encoder: ClipEncoder, store: VectorStore, n: int, seed: int
) -> dict[str, list[float]]:
    texts = queries(n, seed)
    out: dict[str, list[float]] = {
        "api": [],
        "encode": [],
        "search": [],
        "encode+search": [],
        "encode_full": [],
        "get_collection": [],
        "job_server": [],
    }
    # interleaved, so noise from other load on the machine hits every column alike
    for text in texts:
        # This process's own encoder threads spin for a few ms after each pass; let them
        # stop, so they do not slow the service's search that comes next.
        time.sleep(QUIET_S)
        started = time.perf_counter()
        job = api_search(client, text)
        out["api"].append(time.perf_counter() - started)
        if job.get("started_at") and job.get("finished_at"):
            out["job_server"].append(_seconds(job["finished_at"]) - _seconds(job["started_at"]))
        started = time.perf_counter()
        vec = encoder.encode_texts([text])
        mid = time.perf_counter()
        hits = store.search(COLLECTION, vec, TOP_K)
        end = time.perf_counter()
        assert len(hits[0]) == TOP_K
        out["encode"].append(mid - started)
        out["search"].append(end - mid)
        out["encode+search"].append(end - started)
        out["get_collection"].append(timed(lambda: store.get_collection(COLLECTION)))
        started = time.perf_counter()
        encoder.encode_texts([text], full_context=True)
        out["encode_full"].append(time.perf_counter() - started)
    return out


def concurrent(port: int, clients: int, seconds: float) -> Load:
    """`clients` clients searching with `wait`, one distinct text per search."""
    counter = itertools.count()
    rng = np.random.default_rng(11)

    def body() -> bytes:
        words = " ".join(rng.choice(WORDS, size=rng.integers(3, 8)))
        text = f"{words} {next(counter)}"  # distinct: the worker's text cache never answers
        request = {"collection": COLLECTION, "queries": [{"text": text}], "top_k": TOP_K}
        return json.dumps(request).encode()

    return http_load(port, "/v1/jobs/search?wait=10", body, clients, seconds)


def profiled(
    stack: Stack, port: int, clients: int, seconds: float, out: Path
) -> tuple[Load, ProcessProfile]:
    """The concurrent load, with every stack process's CPU and py-spy on the busy ones."""
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    pids["bench (clients)"] = os.getpid()
    if "worker-query" in pids:
        for child in spawned_children(pids["worker-query"]):
            pids["worker-query text encoder"] = child  # ASSETRAG_QUERY_TEXT_PROCESS
    spied: dict[str, int] = {
        n: pids[n]
        for n in ("api", "worker-query", "worker-query text encoder", "milvus")
        if n in pids
    }
    metrics = f"http://127.0.0.1:{metrics_ports(stack.commands)['worker-query']}/metrics"
    before = stage_totals(metrics, STAGES)
    rows_before = stage_totals(metrics, "assetrag_query_batch_rows")
    with ProcessProfile(pids, seconds, out, py_spy=spied) as profile:
        load = concurrent(port, clients, seconds)
    rows_after = stage_totals(metrics, "assetrag_query_batch_rows")
    profile.stages = stages_since(metrics, before)
    profile.batch_rows = {
        stage: (rows - rows_before.get(stage, (0.0, 0.0))[0])
        / max(1.0, calls - rows_before.get(stage, (0.0, 0.0))[1])
        for stage, (rows, calls) in rows_after.items()
    }
    return load, profile


def stages_since(metrics: str, before: Stages) -> dict[str, float]:
    """Mean seconds per search in each query-worker stage since the `before` reading."""
    after = stage_totals(metrics, STAGES)
    jobs = after.get("claim", (0.0, 0.0))[1] - before.get("claim", (0.0, 0.0))[1]
    return stage_means(before, after, jobs)


def bare_rates(encoder: ClipEncoder, clients: int, rounds: int = 3) -> tuple[float, float, float]:
    """Texts/s of the bare encoder, on texts like the load's: one text per call; `clients`
    texts per call; and as the query worker runs it (ASSETRAG_QUERY_TORCH_THREADS threads,
    batches of ASSETRAG_QUERY_BATCH_MAX), the ceiling of a worker that does nothing else."""
    texts = [f"{t} {i}" for i, t in enumerate(queries(clients * rounds, 5))]
    one = timed(lambda: [encoder.encode_texts([t]) for t in texts])
    chunks = [texts[i : i + clients] for i in range(0, len(texts), clients)]
    batched = timed(lambda: [encoder.encode_texts(c) for c in chunks])
    settings = Settings()
    cap = settings.query_batch_max
    threads = TORCH_THREAD.run(torch.get_num_threads)
    TORCH_THREAD.run(torch.set_num_threads, settings.query_torch_threads or threads)
    try:
        worker = timed(
            lambda: [encoder.encode_texts(texts[i : i + cap]) for i in range(0, len(texts), cap)]
        )
    finally:
        TORCH_THREAD.run(torch.set_num_threads, threads)
    return len(texts) / one, len(texts) / batched, len(texts) / worker


def _seconds(stamp: Any) -> float:
    if isinstance(stamp, (int, float)):
        return float(stamp)
    from datetime import datetime

    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def warm(client: httpx.Client, encoder: ClipEncoder, store: VectorStore, n: int = 10) -> float:
    """Warm the query worker (model load), this process's encoder and the index; returns the
    first direct search's latency (what the first query after a load pays)."""
    vec = encoder.encode_texts(["warm up"])
    first = timed(lambda: store.search(COLLECTION, vec, TOP_K))
    for text in queries(n, 999):
        api_search(client, text)
        store.search(COLLECTION, encoder.encode_texts([text]), TOP_K)
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto")
    parser.add_argument("--chunk", type=int, default=5000, help="rows per upsert while loading")
    parser.add_argument("--tiny", action="store_true", help="the small test checkpoint (quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent mode (0: skip)")
    parser.add_argument("--seconds", type=float, default=20.0, help="concurrent mode's length")
    parser.add_argument(
        "--profile",
        type=Path,
        help="during the concurrent load: CPU per process, and py-spy samples of the API, "
        "the query worker and the Milvus Lite server into this folder",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)

    base = Path(tempfile.mkdtemp(prefix="assetrag_bench_search_"))
    stack: Stack | None = None
    try:
        ckpt = base / ("tiny-clip.pt" if args.tiny else "vit-b32-random.pt")
        # on the torch thread, as all torch work here: see shared/clip/torch_thread.py
        TORCH_THREAD.run(build_tiny_checkpoint if args.tiny else build_vit_b32_checkpoint, ckpt)
        encoder = ClipEncoder(str(ckpt), "cpu", args.precision)
        encoder.load()
        dim = encoder.dim
        stack = Stack.under(  # its data and logs under base, a private redis-server
            base,
            {
                "ASSETRAG_CLIP_MODEL": str(ckpt),
                "ASSETRAG_DEVICE": "cpu",
                "ASSETRAG_PRECISION": args.precision,
                "ASSETRAG_GEMINI_API_KEY": "unused",
                # the query worker's stage histograms, read around the profiled load
                **({"ASSETRAG_METRICS_PORT": str(free_port())} if args.profile else {}),
            },
        )
        port = stack.port
        stack.start()
        client = httpx.Client(base_url=stack.url, timeout=60)
        stack.wait_ready()
        store = VectorStore(stack.env["ASSETRAG_MILVUS_URI"])
        store.ensure_collection(COLLECTION, dim, str(ckpt))  # model id = ASSETRAG_CLIP_MODEL
        rng = np.random.default_rng(7)
        loaded = 0
        results: list[dict[str, Any]] = []
        for size in sizes:
            load_s = fill(store, rng, loaded, size, dim, args.chunk)
            loaded = size
            count = store.count(COLLECTION)
            assert count == size, f"count {count} != {size}"
            settle_s = settle(stack.procs["milvus"].pid)
            print(
                f"{size}: loaded {size - (results[-1]['size'] if results else 0)} rows in "
                f"{load_s:.1f}s; Milvus server busy {settle_s:.1f}s more",
                flush=True,
            )
            first = warm(client, encoder, store)
            metrics = (
                f"http://127.0.0.1:{metrics_ports(stack.commands)['worker-query']}/metrics"
                if args.profile
                else None
            )
            before_stages = stage_totals(metrics, STAGES) if metrics else {}
            samples = measure(client, encoder, store, args.queries, seed=size)
            alone = stages_since(metrics, before_stages) if metrics else {}
            results.append(
                {
                    "size": size,
                    "load_s": load_s,
                    "first": first,
                    "samples": samples,
                    "settle_s": settle_s,
                    "alone": alone,
                }
            )
            a50, a99 = pct(samples["api"])
            print(f"{size}: api p50 {a50:.1f} ms p99 {a99:.1f} ms", flush=True)
            if args.clients:
                # the bare rates just before and just after the load, averaged, so that
                # load from elsewhere on the machine hits both sides alike
                before = bare_rates(encoder, args.clients)
                if args.profile:
                    load, profile = profiled(stack, port, args.clients, args.seconds, args.profile)
                    results[-1]["profile"] = profile
                else:
                    load = concurrent(port, args.clients, args.seconds)
                after = bare_rates(encoder, args.clients)
                results[-1]["load"] = load
                results[-1]["bare_rates"] = tuple(
                    (a + b) / 2 for a, b in zip(before, after, strict=True)
                )
                print(
                    f"{size}: {args.clients} clients {load.rate(200):.1f} searches/s, "
                    f"p50 {load.percentile_ms(0.5):.0f} ms",
                    flush=True,
                )

        print()
        print(
            f"model {'tiny' if args.tiny else 'ViT-B/32 (random weights)'}, dim {dim}, "
            f"precision {args.precision} -> {encoder.precision}; top_k {TOP_K}; "
            f"{args.queries} single-text queries per size; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; latencies in ms"
        )
        head = (
            f"| {'vectors':>7} | {'API p50':>7} | {'API p99':>7} | {'enc p50':>7} | "
            f"{'enc p99':>7} | {'srch p50':>8} | {'srch p99':>8} | {'enc+srch p50':>12} | "
            f"{'enc+srch p99':>12} | {'overhead p50':>12} | {'API/bare p50':>12} |"
        )
        print(head)
        print("|" + "|".join("-" * len(c) for c in head.strip().strip("|").split("|")) + "|")
        for r in results:
            s = r["samples"]
            a50, a99 = pct(s["api"])
            e50, e99 = pct(s["encode"])
            m50, m99 = pct(s["search"])
            b50, b99 = pct(s["encode+search"])
            print(
                f"| {r['size']:>7} | {a50:>7.1f} | {a99:>7.1f} | {e50:>7.1f} | {e99:>7.1f} | "
                f"{m50:>8.1f} | {m99:>8.1f} | {b50:>12.1f} | {b99:>12.1f} | "
                f"{a50 - b50:>12.1f} | {a50 / b50:>12.2f} |"
            )
        print()
        print(
            f"| {'vectors':>7} | {'load s':>7} | {'rows/s':>7} | {'index s':>7} | "
            f"{'1st search ms':>13} | "
            f"{'get_collection p50/p99 ms':>25} | {'job started->finished p50/p99 ms':>32} |"
        )
        for r in results:
            s = r["samples"]
            g50, g99 = pct(s["get_collection"])
            j = (
                f"{pct(s['job_server'])[0]:.1f} / {pct(s['job_server'])[1]:.1f}"
                if s["job_server"]
                else "n/a"
            )
            prev = max([p["size"] for p in results if p["size"] < r["size"]], default=0)
            print(
                f"| {r['size']:>7} | {r['load_s']:>7.1f} | "
                f"{(r['size'] - prev) / r['load_s']:>7.0f} | {r['settle_s']:>7.1f} | "
                f"{r['first'] * 1000:>13.1f} | {f'{g50:.1f} / {g99:.1f}':>25} | {j:>32} |"
            )
        print(f"\nmachine: {describe()}")
        print_truncation(results)
        print_concurrent(results, args.clients, args.seconds)
        print_alone(results)
        print_profiles(results)
        client.close()
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def print_truncation(results: list[dict[str, Any]]) -> None:
    print()
    print("| vectors | bare encode p50, truncated | bare encode p50, full 77 tokens | ratio |")
    print("|---:|---:|---:|---:|")
    for r in results:
        e50, f50 = pct(r["samples"]["encode"])[0], pct(r["samples"]["encode_full"])[0]
        print(f"| {r['size']} | {e50:.1f} | {f50:.1f} | {f50 / e50:.2f} |")


def print_alone(results: list[dict[str, Any]]) -> None:
    for r in results:
        if not r.get("alone"):
            continue
        api_ms = 1000 * sum(r["samples"]["api"]) / len(r["samples"]["api"])
        print(f"\n{r['size']} vectors, one search at a time: mean ms per search (API {api_ms:.1f})")
        print("| stage (query worker) | ms |\n|---|---:|")
        for stage, seconds in sorted(r["alone"].items(), key=lambda kv: -kv[1]):
            print(f"| {stage} | {seconds * 1000:.1f} |")
        outside = api_ms - 1000 * sum(r["alone"].values())
        print(f"| outside these stages (API, task queue, long-poll) | {outside:.1f} |")


def print_profiles(results: list[dict[str, Any]]) -> None:
    for r in results:
        profile: ProcessProfile | None = r.get("profile")
        if profile is None:
            continue
        print(f"\n{r['size']} vectors, during the concurrent load: CPU per process")
        print(profile.table())
        load: Load = r["load"]
        if profile.stages and load.latencies_s:
            client_ms = 1000 * sum(load.latencies_s) / len(load.latencies_s)
            print(f"\none search's path, mean ms per search (client round trip {client_ms:.1f}):")
            print("| stage (query worker) | ms |\n|---|---:|")
            for stage, seconds in sorted(profile.stages.items(), key=lambda kv: -kv[1]):
                print(f"| {stage} | {seconds * 1000:.1f} |")
            inside = 1000 * sum(profile.stages.values())
            outside = client_ms - inside
            print(f"| outside these stages (API, task queue, long-poll) | {outside:.1f} |")
            rows = ", ".join(f"{s} {n:.1f}" for s, n in sorted(profile.batch_rows.items()))
            print(f"\nmean rows per shared call: {rows}")
        for name in profile.sampled:
            print()
            print(profile.hot(name))


def print_concurrent(results: list[dict[str, Any]], clients: int, seconds: float) -> None:
    rows = [r for r in results if "load" in r]
    if not rows:
        return
    print()
    print(
        f"{clients} concurrent clients, {seconds:.0f} s each: service searches/s with `wait` "
        "beside the bare encoder's texts/s (one per call; batches of the client count; as "
        "the query worker runs it: its torch threads and batch cap)"
    )
    print(
        "| vectors | searches/s | p50 ms | p99 ms | statuses | client CPU | "
        "bare 1/call texts/s | bare batched texts/s | bare as the worker runs it | "
        "service / that |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        load: Load = r["load"]
        one, batched, worker = r["bare_rates"]
        print(
            f"| {r['size']} | {load.rate(200):.1f} | {load.percentile_ms(0.5):.0f} | "
            f"{load.percentile_ms(0.99):.0f} | {dict(sorted(load.statuses.items()))} "
            f"(broken {load.failures}) | {load.client_cpu:.2f} | {one:.1f} | {batched:.1f} | "
            f"{worker:.1f} | {load.rate(200) / worker:.2f} |"
        )


if __name__ == "__main__":
    main()
