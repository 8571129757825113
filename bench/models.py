"""Every offered model side by side, in one run on one machine: images/s of the bare image
tower (preprocessed batches) and one text query's latency, through the encoder the workers
use. Weights are random (no downloads here), at each model's real architecture and size:
ViT-B/32 from tests/support/clip_checkpoint.py, SigLIP 2 ViT-B/16 and XLM-RoBERTa ViT-B/32
from open_clip's own configs (tests/support/open_clip_models.build_full_size).

    .venv/bin/python bench/models.py [--images 64] [--batch-size 32] [--precision auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe, scratch  # noqa: E402
from shared.clip.encoder import ClipEncoder  # noqa: E402
from shared.clip.onnx_runtime import probe_images  # noqa: E402
from shared.clip.open_clip_encoder import OpenClipEncoder  # noqa: E402
from tests.support.clip_checkpoint import build_vit_b32_checkpoint  # noqa: E402
from tests.support.open_clip_models import build_full_size  # noqa: E402

QUERY = "a red silk shawl with gold trim"


def measure(encoder: ClipEncoder | OpenClipEncoder, images: int, batch: int) -> tuple[float, float]:
    """(images/s at `batch`, median ms of one text query), after a warm pass of each."""
    pixels = [encoder.preprocess(img) for img in probe_images(images, seed=1)]
    encoder.encode_images(pixels[:batch])
    started = time.perf_counter()
    for i in range(0, images, batch):
        encoder.encode_images(pixels[i : i + batch])
    rate = images / (time.perf_counter() - started)
    encoder.encode_texts([QUERY])
    times = []
    for _ in range(20):
        t = time.perf_counter()
        encoder.encode_texts([QUERY])
        times.append((time.perf_counter() - t) * 1000)
    return rate, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    print(describe())
    with scratch("assetrag-models-", keep=False) as base:
        ckpt = build_vit_b32_checkpoint(base / "vit-b32.pt")
        rows: list[tuple[str, Callable[[], ClipEncoder | OpenClipEncoder]]] = [
            ("ViT-B/32 (OpenAI CLIP)", lambda: ClipEncoder(str(ckpt), "cpu", args.precision))
        ]
        for label, arch in (
            ("SigLIP 2 ViT-B/16", "ViT-B-16-SigLIP2"),
            ("XLM-RoBERTa ViT-B/32", "xlm-roberta-base-ViT-B-32"),
        ):
            name = build_full_size(base, arch)
            rows.append(
                (label, partial(OpenClipEncoder, name, "cpu", args.precision, model_dir=base))
            )
        print(f"| model | dim | precision | images/s (batch {args.batch_size}) | one query, ms |")
        print("| --- | --- | --- | --- | --- |")
        for label, make in rows:  # one model held at a time: none pays for another's memory
            encoder = make()
            encoder.load()
            rate, query_ms = measure(encoder, args.images, args.batch_size)
            print(
                f"| {label} | {encoder.dim} | {encoder.precision} | {rate:.1f} | {query_ms:.1f} |",
                flush=True,
            )
            del encoder


if __name__ == "__main__":
    main()
