"""Vectors and asset rows made up for the gateway's tests and the search benchmarks."""

from __future__ import annotations

import numpy as np

from shared.milvus.records import AssetRecord

DIM = 16
MODEL = "test-clip"


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(vectors: np.ndarray, prefix: str = "a", start: int = 0) -> list[AssetRecord]:
    """One row per vector, ids `prefix` + number from `start`, with metadata to filter on."""
    return [
        AssetRecord(
            asset_id=f"{prefix}{n}",
            vector=v.tolist(),
            filename=f"{prefix}{n}.png",
            source=f"upload://{prefix}{n}",
            content_key=f"blobs/{prefix}{n}",
            mime_type="image/png",
            width=64,
            height=32,
            metadata={"color": "red" if n % 2 else "blue", "n": n, "tag": 'quote"d'},
            created_at=1000.0 + n,
        )
        for n, v in enumerate(vectors, start)
    ]
