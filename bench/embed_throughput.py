"""Embedding throughput: the bare model against the whole service, side by side in one run.

(a) bare model: JPEGs decoded and preprocessed up front, then only `ClipEncoder.encode_images`
    in batches is timed (images/s);
(b) end to end: the same JPEGs in a library folder, a real stack (Redis, Milvus Lite server,
    Celery workers, API) as separate processes; timed from `POST /v1/jobs/embed` (a directory
    item) to the job completed *and* every vector searchable (collection count == N).

The ViT-B/32 architecture with random weights stands in for OpenAI's weights (same shapes,
same FLOPs). The embed worker is warmed with a small job first, so the model load is excluded.

    .venv/bin/python bench/embed_throughput.py --images 512 --batch-size 32 --precision auto
    .venv/bin/python bench/embed_throughput.py --backend onnx --precision int8

Whatever the configuration, bare torch fp32 is timed beside it in every round too (unless
that is the configuration), so the speed-up over the plain model is a ratio from one run.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import describe  # noqa: E402
from cli.stack import Stack  # noqa: E402
from shared.clip.encoder import ClipEncoder, cpu_has_native_bf16  # noqa: E402
from shared.clip.torch_thread import TORCH_THREAD  # noqa: E402
from shared.images import sniff_and_decode  # noqa: E402
from tests.support.clip_checkpoint import build_tiny_checkpoint, build_vit_b32_checkpoint  # noqa: E402

BENCH_COLLECTION = "bench_embed"
WARM_COLLECTION = "bench_warmup"
BATCH_LINE = re.compile(
    r"job (?P<job>\S+) batch (?P<batch>\S+): (?P<stored>\d+) stored, (?P<failed>\d+) failed, "
    r"timings (?P<timings>\{.*\})"
)


# --- inputs ------------------------------------------------------------------------------------


def photo_like_jpeg(seed: int, size: tuple[int, int], quality: int = 90) -> bytes:
    """A distinct JPEG with photo-like entropy: smooth colour gradients, shapes and noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.002, 0.03), rng.uniform(0.002, 0.03), rng.uniform(0, 6.28)
        img[..., c] = 128 + 90 * np.sin(fx * x + fy * y + ph)
    for _ in range(8):  # a few flat blobs with hard edges
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(20, 120)
        mask = (x - x0) ** 2 + (y - y0) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)  # sensor-like noise keeps the entropy realistic
    out = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_jpegs(folder: Path, count: int, size: tuple[int, int], start: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(start, start + count):
        path = folder / f"img_{seed:06d}.jpg"
        path.write_bytes(photo_like_jpeg(seed, size))
        paths.append(path)
    return paths


# --- (a) the bare model ------------------------------------------------------------------------


class Bare:
    """The model in this process, the JPEGs decoded and preprocessed up front (untimed)."""

    def __init__(
        self,
        model: str,
        precision: str,
        paths: list[Path],
        batch_size: int,
        backend: str = "torch",
        cache_dir: Path | None = None,
        share: Bare | None = None,
    ) -> None:
        import torch

        self.encoder = ClipEncoder(model, "cpu", precision, backend, cache_dir)
        self.encoder.load()
        self.runs: list[float] = []
        if share is not None:  # another configuration of the model over the same tensors
            self.decode_ms, self.n, self.batches = share.decode_ms, share.n, share.batches
            self.encoder.encode_images(self.batches[0])
            return
        tensors = []
        for path in paths:  # exactly the worker's decode path (draft mode included)
            tensors.append(self._decode(path))
        # decode + preprocess cost, timed on a warm second pass over a sample, one thread
        sample = paths[:64]
        started = time.perf_counter()
        for path in sample:
            self._decode(path)
        self.decode_ms = (time.perf_counter() - started) / len(sample) * 1000
        self.n = len(paths)
        self.batches = [
            TORCH_THREAD.run(torch.stack, tensors[i : i + batch_size])
            for i in range(0, len(tensors), batch_size)
        ]
        self.encoder.encode_images(self.batches[0])  # warm: allocator, oneDNN kernels

    def _decode(self, path: Path) -> Any:
        _, image = sniff_and_decode(
            path.read_bytes(), 64_000_000, draft_size=self.encoder.input_resolution
        )
        return self.encoder.preprocess(image)

    def run(self) -> float:
        started = time.perf_counter()
        for batch in self.batches:
            self.encoder.encode_images(batch)
        elapsed = time.perf_counter() - started
        self.runs.append(elapsed)
        return elapsed


# --- (b) end to end ----------------------------------------------------------------------------


def wait_job(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
    raise RuntimeError(f"job {job_id} did not finish in {timeout_s}s")


def collection_count(client: httpx.Client, name: str) -> int:
    response = client.get(f"/v1/collections/{name}")
    return int(response.json()["count"]) if response.status_code == 200 else 0


def embed_folder(
    client: httpx.Client, folder: Path, collection: str, expect: int, timeout_s: float
) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.post(
        "/v1/jobs/embed",
        json={
            "collection": collection,
            "directory": {"path": str(folder)},
        },
    )
    response.raise_for_status()
    job_id = response.json()["id"]
    submitted = time.perf_counter()
    job = wait_job(client, job_id, timeout_s)
    completed = time.perf_counter()
    if job["state"] != "completed" or job["progress"]["succeeded"] != expect:
        raise RuntimeError(f"embed job ended {job['state']}: {job['progress']} {job.get('error')}")
    while (count := collection_count(client, collection)) < expect:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"only {count} of {expect} vectors searchable")
        time.sleep(0.05)
    searchable = time.perf_counter()
    return {
        "job_id": job_id,
        "submit_s": submitted - started,
        "to_completed_s": completed - started,
        "to_searchable_s": searchable - started,
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
    }


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack (and this one, the bare side)."""
    return {name: cpu_seconds(proc.pid) for name, proc in stack.procs.items()}


def batch_timings(log_file: Path, job_id: str) -> list[dict[str, Any]]:
    rows = []
    if not log_file.exists():
        return rows
    for line in log_file.read_text(errors="replace").splitlines():
        match = BATCH_LINE.search(line)
        if match and match["job"] == job_id:
            rows.append(
                {
                    "batch": match["batch"],
                    "stored": int(match["stored"]),
                    **ast.literal_eval(match["timings"]),
                }
            )
    return rows


def side_by_side(
    model: str,
    precision: str,
    backend: str,
    library: Path,
    n: int,
    warm_folder: Path,
    warm_n: int,
    batch_size: int,
    base: Path,
    repeats: int,
    decode_threads: int | None,
    bare: Bare,
    reference: Bare | None,
) -> dict[str, Any]:
    """Start the stack, warm it, then alternate a bare pass and an end-to-end pass, so that
    noise from other load on the machine hits both sides alike."""
    env = {
        "ASSETRAG_CLIP_MODEL": model,
        "ASSETRAG_DEVICE": "cpu",
        "ASSETRAG_PRECISION": precision,
        "ASSETRAG_BACKEND": backend,
        "ASSETRAG_LIBRARY_ROOTS": str(base),
        "ASSETRAG_EMBED_BATCH_SIZE": str(batch_size),
        "ASSETRAG_GEMINI_API_KEY": "unused",
    }
    if decode_threads:
        env["ASSETRAG_DECODE_THREADS"] = str(decode_threads)
    stack = Stack.under(base, env)  # its data and logs under base, a private redis-server
    log_dir = base / "logs"
    runs = []
    with stack.running(), httpx.Client(base_url=stack.url, timeout=60) as client:
        warm = embed_folder(client, warm_folder, WARM_COLLECTION, warm_n, 600)
        for attempt in range(repeats):
            bare_s = bare.run()
            ref_s = reference.run() if reference is not None else bare_s
            # Each repeat goes to a fresh collection, so nothing is deduplicated away.
            name = f"{BENCH_COLLECTION}_{attempt}"
            cpu_before = cpu_by_process(stack)
            run = embed_folder(client, library, name, n, 3600)
            cpu_after = cpu_by_process(stack)
            run["cpu"] = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
            run["batches"] = batch_timings(log_dir / "worker-embed.log", run["job_id"])
            run["bare_s"] = bare_s
            run["reference_s"] = ref_s
            run["load"] = os.getloadavg()[0]
            runs.append(run)
            print(
                f"round {attempt}: bare {bare_s:.2f}s ({n / bare_s:.1f} img/s), end to end "
                f"{run['to_searchable_s']:.2f}s ({n / run['to_searchable_s']:.1f} img/s), "
                f"ratio {bare_s / run['to_searchable_s']:.2f}; bare torch fp32 {ref_s:.2f}s "
                f"({n / ref_s:.1f} img/s), e2e / torch fp32 {ref_s / run['to_searchable_s']:.2f}; "
                f"load avg {run['load']:.1f}",
                flush=True,
            )
    return {"warm": warm, "runs": runs, "log_dir": str(log_dir)}


# --- report ------------------------------------------------------------------------------------


def stage_summary(batches: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for batch in batches:
        for key, value in batch.items():
            if key in ("batch", "stored"):
                continue
            sums[key] = sums.get(key, 0.0) + float(value)
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8", "auto"), default="auto")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--size", default="640x480", help="JPEG size WxH (default 640x480)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of each side")
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=None,
        help="ASSETRAG_DECODE_THREADS for the embed worker (default: its setting)",
    )
    parser.add_argument("--tiny", action="store_true", help="the small test checkpoint instead")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    base = Path(tempfile.mkdtemp(prefix="assetrag_bench_embed_"))
    try:
        t0 = time.perf_counter()
        ckpt = base / ("tiny-clip.pt" if args.tiny else "vit-b32-random.pt")
        # on the torch thread, as all torch work here: see shared/clip/torch_thread.py
        TORCH_THREAD.run(build_tiny_checkpoint if args.tiny else build_vit_b32_checkpoint, ckpt)
        library = base / "library"
        paths = write_jpegs(library, args.images, (w, h), start=0)
        warm_folder = base / "warmup"
        warm_n = min(args.batch_size, 16)
        write_jpegs(warm_folder, warm_n, (w, h), start=1_000_000)
        jpeg_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(
            f"setup: checkpoint + {args.images} JPEGs ({w}x{h}, {jpeg_kb:.0f} KB avg) "
            f"in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )

        onnx_cache = base / "data" / "onnx"  # the stack's: its worker finds the export made
        bare = Bare(str(ckpt), args.precision, paths, args.batch_size, args.backend, onnx_cache)
        plain = args.backend == "torch" and bare.encoder.precision == "fp32"
        reference = None if plain else Bare(str(ckpt), "fp32", paths, args.batch_size, share=bare)
        e2e = side_by_side(
            str(ckpt),
            args.precision,
            args.backend,
            library,
            args.images,
            warm_folder,
            warm_n,
            args.batch_size,
            base,
            args.repeats,
            args.decode_threads,
            bare,
            reference,
        )
        bare_ips = args.images / min(bare.runs)
        best = min(e2e["runs"], key=lambda r: r["to_searchable_s"])
        e2e_ips = args.images / best["to_searchable_s"]
        ratio = e2e_ips / bare_ips
        ratios = [r["bare_s"] / r["to_searchable_s"] for r in e2e["runs"]]
        ref_ips = args.images / min(r["reference_s"] for r in e2e["runs"])
        ref_ratios = [r["reference_s"] / r["to_searchable_s"] for r in e2e["runs"]]
        import torch

        print()
        print(
            f"model {'tiny' if args.tiny else 'ViT-B/32 (random weights)'}, "
            f"dim {bare.encoder.dim}, "
            f"backend {args.backend}, precision {args.precision} -> image tower "
            f"{bare.encoder.image_precision} (native bf16: "
            f"{cpu_has_native_bf16()}), batch {args.batch_size}, {args.images} images "
            f"{w}x{h}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"machine: {describe()}")
        print(f"| {'measure':<44} | {'value':>10} |")
        print(f"|{'-' * 46}|{'-' * 12}|")
        print(
            f"| {'bare encode, images/s (best of ' + str(args.repeats) + ')':<44} | "
            f"{bare_ips:>10.1f} |"
        )
        print(
            f"| {'end to end, images/s (best of ' + str(args.repeats) + ')':<44} | "
            f"{e2e_ips:>10.1f} |"
        )
        print(f"| {'ratio end to end / bare':<44} | {ratio:>10.2f} |")
        print(
            f"| {'ratio per round (bare s / e2e s)':<44} | "
            f"{' '.join(f'{r:.2f}' for r in ratios):>10} |"
        )
        print(f"| {'bare torch fp32, images/s (same rounds)':<44} | {ref_ips:>10.1f} |")
        print(f"| {'ratio end to end / bare torch fp32':<44} | {e2e_ips / ref_ips:>10.2f} |")
        print(f"| {'ratio bare / bare torch fp32':<44} | {bare_ips / ref_ips:>10.2f} |")
        print(
            f"| {'e2e / torch fp32 per round':<44} | "
            f"{' '.join(f'{r:.2f}' for r in ref_ratios):>10} |"
        )
        print(f"| {'e2e submit -> job completed, s':<44} | {best['to_completed_s']:>10.2f} |")
        print(f"| {'e2e submit -> all N searchable, s':<44} | {best['to_searchable_s']:>10.2f} |")
        print(f"| {'bare encode of the same N, s':<44} | {min(bare.runs):>10.2f} |")
        print(f"| {'decode+preprocess, ms/image (1 thread)':<44} | {bare.decode_ms:>10.2f} |")
        for i, run in enumerate(e2e["runs"]):
            sums = stage_summary(run["batches"])
            if not sums:
                print(f"(run {i}: no batch timings found in {e2e['log_dir']}/worker-embed.log)")
                continue
            staged = sum(sums.values())
            print(
                f"\nrun {i}: embed worker per-stage timings, {len(run['batches'])} batches "
                f"(sum over batches; wall {run['to_searchable_s']:.2f}s, "
                f"load avg {run['load']:.1f})"
            )
            print(f"| {'stage':<28} | {'total s':>8} | {'ms/image':>8} | {'% of wall':>9} |")
            print(f"|{'-' * 30}|{'-' * 10}|{'-' * 10}|{'-' * 11}|")
            for key, value in [
                *sums.items(),
                ("(outside batches)", run["to_searchable_s"] - staged),
            ]:
                print(
                    f"| {key:<28} | {value:>8.2f} | {value / args.images * 1000:>8.2f} | "
                    f"{value / run['to_searchable_s'] * 100:>8.1f}% |"
                )
            writes = [float(b.get("write", 0.0)) for b in run["batches"]]
            # the batch that made the collection (create, index, load) pays for it once
            creation = max(writes) - float(np.median(writes))
            steady = args.images / (run["to_searchable_s"] - creation)
            print(
                f"making the collection: ~{creation:.2f}s (the first batch's extra write); "
                f"end to end without it {steady:.1f} images/s"
                + (f", {steady / ref_ips:.2f}x bare torch fp32" if ref_ips else "")
            )
            cpu = run.get("cpu") or {}
            print(
                "CPU seconds used by each stack process during the run "
                f"({os.cpu_count()} CPUs x wall = "
                f"{(os.cpu_count() or 1) * run['to_searchable_s']:.0f} available): "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
            )
            if i == 0 and run["batches"]:
                per = [b.get("encode", 0.0) for b in run["batches"]]
                print(
                    f"worker encode per batch: median {np.median(per):.3f}s; bare encode per "
                    f"batch: {min(bare.runs) / len(bare.batches):.3f}s"
                )
        if args.keep:
            print(f"\nkept {base}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
