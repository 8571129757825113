"""Submit rate: how many search jobs one API process accepts per second.

N concurrent clients `POST /v1/jobs/search` (one text query, no `wait`) for a fixed time on
keep-alive connections against one API process (uvicorn, one worker process), a private
Redis and the Milvus Lite server; no Celery worker consumes, so only the submit path is
measured. Beside it, in the same run, the bare floor: a loop in this process that does what
a submit must (write the job record, send the Celery task to Redis) without HTTP.

The load generator is a minimal HTTP/1.1 client on raw asyncio streams (uvloop), so that
the client costs as little CPU as possible on a small machine; its own CPU time is printed.

    .venv/bin/python bench/submit_rate.py [--clients 1,20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import describe, http_load, scratch  # noqa: E402
from cli.stack import Stack  # noqa: E402
from shared.contract import JobKind  # noqa: E402
from shared.jobs.store import JobStore  # noqa: E402
from shared.milvus.gateway import VectorStore  # noqa: E402
from shared.tasks import RUN_SEARCH, TaskQueue, make_celery  # noqa: E402

COLLECTION = "bench_submit"
PATH = "/v1/jobs/search"
BODY = json.dumps(
    {"collection": COLLECTION, "queries": [{"text": "red silk shawl with gold trim"}], "top_k": 10}
).encode()


def bare_floor(stack: Stack, seconds: float) -> dict[str, float]:
    """What a submit must do at least, in a loop in this process, no HTTP."""
    import redis

    settings = stack.settings()
    client = redis.Redis.from_url(settings.redis_url)
    jobs = JobStore(client, settings.job_ttl_s)
    celery = make_celery(settings)
    queue = TaskQueue(celery, client)
    request = json.loads(BODY)
    steps = {
        "Celery send_task alone (the old path)": lambda: celery.send_task(
            RUN_SEARCH, ["x" * 24], queue="query"
        ),
        "job record + its task in one step (a submit)": lambda: jobs.create(
            JobKind.search, request, first_task=lambda job_id: queue.message(RUN_SEARCH, job_id)
        ),
    }
    rates = {}
    for name, step in steps.items():
        count = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            count += 1
        rates[name] = count / (time.perf_counter() - started)
    celery.close()
    return rates


def process_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,20")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print(f"machine: {describe()}")
    with (
        scratch("assetrag-submit-", args.keep) as base,
        # its data and logs under base, a private redis-server, no worker (so never "ready")
        Stack.under(base, workers=()).running(ready_timeout_s=None) as stack,
    ):
        measure(stack, stack.port, args.clients, args.seconds)


def measure(stack: Stack, port: int, clients_list: str, seconds: float) -> None:
    with VectorStore(stack.settings().resolved_milvus_uri) as vectors:
        vectors.ensure_collection(COLLECTION, 512, stack.settings().clip_model)
    api_pid = stack.procs["api"].pid
    http_load(port, PATH, lambda: BODY, 4, 2.0)  # warm-up: connections, first Milvus calls
    header = ("clients", "submits/s", "p50 ms", "p99 ms", "API CPU", "client CPU")
    print(" ".join(f"{h:>10}" for h in header))
    for clients in [int(c) for c in clients_list.split(",")]:
        cpu_before = process_cpu(api_pid)
        seen = http_load(port, PATH, lambda: BODY, clients, seconds)
        api_cpu = (process_cpu(api_pid) - cpu_before) / seconds
        if set(seen.statuses) != {202} or seen.failures:
            print(f"  unexpected: statuses {seen.statuses}, {seen.failures} broken connections")
        print(
            f"{clients:>10} {seen.rate(202):>10.0f} {seen.percentile_ms(0.5):>10.1f}"
            f" {seen.percentile_ms(0.99):>10.1f} {api_cpu:>10.0%} {seen.client_cpu:>10.0%}"
        )
    for name, rate in bare_floor(stack, min(seconds, 5.0)).items():
        print(f"bare loop, no HTTP, one thread: {name}: {rate:.0f}/s")


if __name__ == "__main__":
    main()
