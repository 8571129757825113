"""CLIP's image tower on ONNX Runtime, for CPUs: fp32, or int8 by dynamic quantisation.

Only `shared/clip/encoder.py` uses this module (the API never imports it, nor onnxruntime).
A model is exported once, then kept under the cache folder by its checkpoint's hash, so
every worker (and every restart) after the first loads the file. One process at a time
builds a folder's files (a lock file), and each is written to a temporary name and renamed,
so workers starting together export once and never read half a file.
Nothing here is trusted blindly: `parity` measures the runtime against torch fp32 on probe
images, and the encoder refuses to serve below its bound.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # clip imports pkg_resources, which warns on import
    from clip.model import CLIP

OPSET = 17
# Bumped when the export changes, so files from an older export are never loaded.
EXPORT_VERSION = 1
INPUT, OUTPUT = "pixels", "features"


class _ImageTower(torch.nn.Module):
    """`CLIP.encode_image` as a module of its own, so only the image tower is exported."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


def _atomic_path(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp's 0600 would hide the export from other users' workers
    return Path(name)


def export_fp32(model: CLIP, path: Path) -> Path:
    """The image tower as an fp32 ONNX graph with a dynamic batch axis."""
    tower = _ImageTower(model).eval()  # fp32 on the CPU already; the model is shared
    res = model.visual.input_resolution
    tmp = _atomic_path(path)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns it is legacy
            torch.onnx.export(
                tower,
                (torch.zeros(2, 3, res, res),),
                str(tmp),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,  # the tracing exporter needs no onnxscript and handles ViTs
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def quantize_int8(source: Path, path: Path) -> Path:
    """Dynamic quantisation: int8 weights, activations quantised per call (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_path(path)
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Holds the folder's export lock. Without it, workers starting together each exported
    the same model, and ONNX Runtime's quantiser writes a fixed-name `<source>-inferred.onnx`
    beside its input and deletes it after, so a second quantiser's delete failed the first
    one's load (a worker died at start-up)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".export.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_graph(model: CLIP, checkpoint_hash: str, precision: str, folder: Path) -> Path:
    """The ONNX file for this checkpoint and precision, exported (and quantised) on first use."""
    stem = f"{checkpoint_hash[:32]}-v{EXPORT_VERSION}"
    fp32 = folder / f"{stem}-fp32.onnx"
    int8 = folder / f"{stem}-int8.onnx"
    wanted = fp32 if precision == "fp32" else int8
    if wanted.exists():
        return wanted
    with exclusive(folder):
        if not fp32.exists():
            export_fp32(model, fp32)
        if wanted is int8 and not int8.exists():
            quantize_int8(fp32, int8)
    return wanted


class OnnxImageEncoder:
    """An ONNX Runtime session over the image tower; `encode` is thread-safe, as
    `InferenceSession.run` is."""

    def __init__(self, path: Path, precision: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # as many threads as torch uses: the worker's one knob for its share of the CPU
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.path = path
        self.precision = precision
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def build(
        cls, model: CLIP, checkpoint_hash: str, precision: str, folder: Path
    ) -> OnnxImageEncoder:
        return cls(cached_graph(model, checkpoint_hash, precision, folder), precision)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, R, R) float32 preprocessed images -> (N, dim) raw (unnormalised) features."""
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        out: Any = self._session.run([OUTPUT], {INPUT: batch})[0]
        return np.asarray(out, dtype=np.float32)


# --- parity ------------------------------------------------------------------------------------


def probe_images(count: int = 8, seed: int = 20261125) -> list[Image.Image]:
    """Deterministic photo-like images: smooth colour fields, hard-edged shapes and noise, so
    every part of the image tower (not only its response to flat colour) is exercised."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = int(rng.integers(160, 400)), int(rng.integers(160, 400))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.empty((h, w, 3), dtype=np.float32)
        for c in range(3):
            fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
            img[..., c] = 128 + 90 * np.sin(fx * x + fy * y + phase)
        for _ in range(5):
            cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(10, 80)
            img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 10, img.shape)
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


@dataclass(frozen=True)
class Parity:
    """Cosine between the runtime's and torch fp32's embeddings of the same images."""

    min_cosine: float
    mean_cosine: float
    images: int


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


def parity(
    model: CLIP,
    onnx: OnnxImageEncoder,
    transform: Callable[[Image.Image], torch.Tensor],
    images: list[Image.Image] | None = None,
) -> Parity:
    """Both paths on the same preprocessed images; torch in fp32 (the reference)."""
    batch = torch.stack([transform(img) for img in images or probe_images()])
    with torch.inference_mode():
        reference = model.encode_image(batch).float().numpy()
    found = cosines(onnx.encode(batch.numpy()), reference)
    return Parity(float(found.min()), float(found.mean()), len(found))


# --- `assetrag check-model` --------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One runtime of a model's image tower beside torch fp32 on the same images."""

    runtime: str  # "torch fp32", "onnx fp32", "onnx int8"
    parity: Parity | None  # None for the reference itself
    images_per_s: float


def _rate(encode: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Images/s, the best of `repeats` passes after a warm one (a busy machine only ever
    slows a pass down)."""
    encode()  # warm: allocators, kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encode()
        best = min(best, time.perf_counter() - started)
    return count / max(best, 1e-9)


def check_model(
    model: CLIP,
    checkpoint_hash: str,
    transform: Callable[[Image.Image], torch.Tensor],
    cache_dir: Path,
    images: list[Image.Image] | None = None,
) -> list[Check]:
    """Torch fp32, then the onnx image tower at fp32 and int8: parity and speed on `images`
    (the probe images when None), exporting into `cache_dir` as a worker would."""
    images = images or probe_images()
    batch = torch.stack([transform(img) for img in images])
    pixels = batch.numpy()

    def reference() -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(model.encode_image(batch).float().numpy())

    checks = [Check("torch fp32", None, _rate(reference, len(images)))]
    for precision in ("fp32", "int8"):
        onnx = OnnxImageEncoder.build(model, checkpoint_hash, precision, cache_dir)
        found = parity(model, onnx, transform, images)
        speed = _rate(partial(onnx.encode, pixels), len(images))
        checks.append(Check(f"onnx {precision}", found, speed))
    return checks
