"""The one place CLIP is spoken to (workers only; the API never imports this module).

`ClipEncoder` loads on first use (or an explicit, idempotent `load()`), after any fork.
A model is either one of `clip.available_models()` or a checkpoint file: OpenAI's TorchScript
archives and plain state dicts go through the same loader, and every size (embedding dim,
input resolution, context length) is read from the model, never assumed.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # clip imports pkg_resources, which warns on import
    import clip
    from clip.model import CLIP, build_model

DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: where bf16 autocast on the CPU is a real speed-up."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return device


def resolve_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if device == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """OpenAI's TorchScript archive first, then a plain (or wrapped) state dict."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated; OpenAI's files use it
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except Exception:
        pass
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read CLIP checkpoint {path}: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ValueError(f"CLIP checkpoint {path} holds no state dict")
    return loaded


def _load_file(spec: str, device: str) -> CLIP:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(
            f"CLIP model {spec!r} is neither a known model name "
            f"({', '.join(clip.available_models())}) nor an existing checkpoint file ({path})"
        )
    state_dict = _read_state_dict(path)
    try:
        model = build_model(state_dict)
    except Exception as exc:
        raise ValueError(f"{path} is not a CLIP checkpoint: {exc!r}") from exc
    return model.to(device)


def _load_model(spec: str, device: str, precision: str) -> CLIP:
    if spec in clip.available_models():
        model, _ = clip.load(spec, device=device, jit=False)  # downloads on first use
    else:
        model = _load_file(spec, device)
    # build_model leaves weights in fp16; keep them so only for fp16 on CUDA (as OpenAI does)
    if not (device == "cuda" and precision == "fp16"):
        model = model.float()
    return model.eval()


class ClipEncoder:
    """CLIP image and text encoders behind one lazily loaded, thread-safe object."""

    def __init__(self, model: str, device: str = "auto", precision: str = "auto") -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.model_id = model
        self._want_device = device
        self._want_precision = precision
        self._lock = threading.Lock()
        self._model: CLIP | None = None
        self._transform: Callable[[Image.Image], torch.Tensor] | None = None
        self._device: str | None = None
        self._precision: str | None = None

    # --- loading ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model once; later calls (from any thread) return at once."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            device = resolve_device(self._want_device)
            precision = resolve_precision(self._want_precision, device)
            model = _load_model(self.model_id, device, precision)
            self._transform = clip.clip._transform(model.visual.input_resolution)
            self._device, self._precision = device, precision
            self._model = model

    def _ready(self) -> CLIP:
        self.load()
        assert self._model is not None
        return self._model

    # --- what the model is ------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self._ready().text_projection.shape[1])

    @property
    def input_resolution(self) -> int:
        return int(self._ready().visual.input_resolution)

    @property
    def context_length(self) -> int:
        return int(self._ready().context_length)

    @property
    def device(self) -> str:
        self.load()
        assert self._device is not None
        return self._device

    @property
    def precision(self) -> str:
        self.load()
        assert self._precision is not None
        return self._precision

    # --- encoding ---------------------------------------------------------------------------

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """OpenAI CLIP's own transform: bicubic resize, centre crop, RGB, normalise. Thread-safe."""
        self.load()
        assert self._transform is not None
        return self._transform(img)

    def _autocast(self) -> AbstractContextManager[Any]:
        dtype = _DTYPES.get(self.precision)
        if dtype is None or (self.device == "cuda" and self.precision == "fp16"):
            return nullcontext()  # fp32, or fp16 weights on CUDA
        return torch.autocast(device_type=self.device, dtype=dtype)

    def _finish(self, features: torch.Tensor) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(N, 3, R, R) preprocessed images -> (N, dim) float32 unit vectors."""
        model = self._ready()
        if batch.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            features = model.encode_image(batch.to(self.device, non_blocking=True))
        return self._finish(features)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit vectors; text over the context length is truncated."""
        model = self._ready()
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        tokens = clip.tokenize(texts, context_length=self.context_length, truncate=True)
        with torch.inference_mode(), self._autocast():
            features = model.encode_text(tokens.to(self.device))
        return self._finish(features)
