"""The one place CLIP is spoken to (workers only; the API never imports this module).

`ClipEncoder` loads on first use (or an explicit, idempotent `load()`), after any fork.
A model is either one of `clip.available_models()` or a checkpoint file: OpenAI's TorchScript
archives and plain state dicts go through the same loader, and every size (embedding dim,
input resolution, context length) is read from the model, never assumed.

Levers for speed, each checked for exactness:
- text: the transformer runs only up to the batch's last end-of-text token, which gives the
  same features as the full 77 tokens, and as one TorchScript call that releases the GIL
  (`shared/clip/text_tower.py`);
- every torch call runs on the process's one torch thread (`shared/clip/torch_thread.py`: OpenMP
  slows down as soon as a second thread runs torch), and preprocessing is numpy, so the
  threads that decode images never touch torch;
- images, on the CPU: `backend="onnx"` runs the image tower on ONNX Runtime (fp32, or int8
  by dynamic quantisation), exported once per checkpoint and refused at load when it drifts
  from torch fp32 (`shared/clip/onnx_runtime.py`).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # clip imports pkg_resources, which warns on import
    import clip
    from clip.model import CLIP, build_model
from torchvision.transforms import Compose, Normalize, ToTensor

from shared.clip.text_tower import encode_tokens, traced_tower
from shared.clip.torch_thread import TORCH_THREAD

if TYPE_CHECKING:
    from shared.clip.onnx_runtime import Check, OnnxImageEncoder
    from shared.settings import Settings

DEVICES = ("auto", "cuda", "cpu")
BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
# What each backend can run its image tower at (the text tower always runs on torch).
_BACKEND_PRECISIONS = {"torch": ("auto", "fp32", "fp16", "bf16"), "onnx": ("auto", "fp32", "int8")}
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


def check_options(device: str, precision: str, backend: str) -> None:
    """Refuses a combination that cannot run, before anything is loaded."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    allowed = _BACKEND_PRECISIONS[backend]
    if precision not in allowed:
        raise ValueError(
            f"precision with the {backend} backend must be one of {allowed}, not {precision!r}"
        )
    if backend == "onnx" and device == "cuda":
        raise ValueError("the onnx backend runs on the CPU; use the torch backend on CUDA")


def resolve_precision(precision: str, device: str) -> str:
    """The torch precision: what the text tower (and the torch image tower) runs at."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "int8":
        return resolve_precision("auto", device)  # int8 is the onnx image tower's alone
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


def checkpoint_hash(spec: str) -> str:
    """What identifies a model's weights: the SHA-256 OpenAI publishes in a named model's URL,
    or a checkpoint file's own, read in chunks."""
    if spec in clip.available_models():
        return str(clip.clip._MODELS[spec].split("/")[-2])
    digest = hashlib.sha256()
    with Path(spec).expanduser().open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# oneDNN builds its bf16 kernels anew for every input shape it meets (0.3-1 s each on the
# 2-core EPYC here, against ~20 ms for the pass itself), so the shapes a text batch can take
# are kept few: lengths in steps of LENGTH_STEP tokens (shared/clip/text_tower.py), batches
# padded to a power of two; and `load()` builds the common ones, so no query pays for a
# kernel build.
_WARM_BATCHES = (1, 2, 4, 8, 16, 32)
_WARM_LENGTHS = (8, 16)


def autocast_for(device: str, precision: str) -> AbstractContextManager[Any]:
    """What a pass runs under at this precision: autocast, or nothing (fp32, or fp16
    weights on CUDA)."""
    dtype = _DTYPES.get(precision)
    if dtype is None or (device == "cuda" and precision == "fp16"):
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def lower_text_weights(model: CLIP, dtype: torch.dtype) -> None:
    """The text transformer's matmul weights in `dtype`, once, for a model run under autocast.

    Autocast casts a matmul's fp32 weights to bf16 on every call (its cast cache lives only
    as long as one autocast block), which for a short query cost a quarter of the pass. Cast
    once here, they hold the very values autocast would make, so the features are the same
    to the bit (tested). Only the text tower: the image tower stays fp32, as the onnx export
    and its parity check read it so.
    """
    with torch.no_grad():
        for module in model.transformer.modules():
            if isinstance(module, torch.nn.Linear):
                params = [module.weight, module.bias]
            elif isinstance(module, torch.nn.MultiheadAttention):
                params = [module.in_proj_weight, module.in_proj_bias]
            else:
                continue
            for param in params:
                if param is not None:
                    param.data = param.data.to(dtype)


def _padded_rows(tokens: torch.Tensor) -> torch.Tensor:
    """Rows of zeros up to the next power of two (their features are computed and dropped)."""
    rows = 1 << (tokens.shape[0] - 1).bit_length()
    if rows == tokens.shape[0]:
        return tokens
    return torch.cat([tokens, tokens.new_zeros(rows - tokens.shape[0], tokens.shape[1])])


def _load_model(spec: str, device: str, precision: str) -> CLIP:
    if spec in clip.available_models():
        model, _ = clip.load(spec, device=device, jit=False)  # downloads on first use
    else:
        model = _load_file(spec, device)
    # build_model leaves weights in fp16; keep them so only for fp16 on CUDA (as OpenAI does)
    if not (device == "cuda" and precision == "fp16"):
        model = model.float()
    return model.eval()


Transform = Callable[[Image.Image], torch.Tensor]


def numpy_transform(transform: Compose) -> Transform:
    """CLIP's transform with its last two steps (ToTensor, Normalize) done in numpy: the same
    float32 operations in the same order, so the same values to the bit, without a torch
    kernel in the calling thread (see `shared/clip/torch_thread.py`)."""
    *pil_steps, to_tensor, normalize = transform.transforms
    if not isinstance(to_tensor, ToTensor) or not isinstance(normalize, Normalize):
        raise TypeError(f"unexpected CLIP transform: {transform}")
    mean = np.asarray(normalize.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(normalize.std, dtype=np.float32).reshape(-1, 1, 1)

    def run(img: Image.Image) -> torch.Tensor:
        for step in pil_steps:
            img = step(img)
        chw = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        scaled = chw.astype(np.float32, order="C") / np.float32(255)
        return torch.from_numpy((scaled - mean) / std)

    return run


class ClipEncoder:
    """CLIP image and text encoders behind one lazily loaded, thread-safe object. Every
    torch call it makes runs on the process's torch thread, whichever thread asks.

    With `backend="onnx"` the image tower runs on ONNX Runtime at `precision` (fp32 or int8),
    exported into `cache_dir` once per checkpoint, and the load fails (ValueError) when its
    cosine to torch fp32 on probe images is below `min_cosine`; the text tower stays on torch.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        precision: str = "auto",
        backend: str = "torch",
        cache_dir: Path | None = None,
        min_cosine: float = 0.99,
    ) -> None:
        check_options(device, precision, backend)
        self.model_id = model
        self.backend = backend
        self._want_device = "cpu" if backend == "onnx" else device
        self._want_precision = precision
        self._cache_dir = cache_dir
        self._min_cosine = min_cosine
        self._lock = threading.Lock()
        self._model: CLIP | None = None
        self._text_tower: torch.jit.ScriptModule | None = None  # None: texts run eagerly
        self._onnx: OnnxImageEncoder | None = None
        self._transform: Transform | None = None
        self._device: str | None = None
        self._precision: str | None = None

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> ClipEncoder:
        """An encoder for `model` with the service's device, precision and backend."""
        return cls(
            model,
            settings.device,
            settings.precision,
            settings.backend,
            settings.data_dir / "onnx",
            settings.onnx_min_cosine,
        )

    # --- loading ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model once; later calls (from any thread) return at once."""
        if self._model is not None:
            return
        TORCH_THREAD.run(self._load)

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            device = resolve_device(self._want_device)
            precision = resolve_precision(self._want_precision, device)
            model = _load_model(self.model_id, device, precision)
            if precision == "bf16":
                lower_text_weights(model, torch.bfloat16)
            transform = numpy_transform(clip.clip._transform(model.visual.input_resolution))
            if self.backend == "onnx":
                self._onnx = self._load_onnx(model, transform)
            self._transform = transform
            self._device, self._precision = device, precision
            self._warm_text(model)
            self._text_tower = traced_tower(model, partial(self._trace_context, device, precision))
            self._model = model

    @staticmethod
    @contextmanager
    def _trace_context(device: str, precision: str) -> Iterator[None]:
        with torch.no_grad(), autocast_for(device, precision):
            yield

    def _warm_text(self, model: CLIP) -> None:
        """Builds the bf16 kernels of the common text shapes now (see LENGTH_STEP)."""
        if self._device != "cpu" or self._precision != "bf16":
            return  # fp32 and CUDA reuse their kernels across shapes
        for rows in _WARM_BATCHES:
            for length in _WARM_LENGTHS:
                tokens = torch.zeros(rows, model.context_length, dtype=torch.long)
                tokens[:, length - 1] = 1  # an end-of-text stand-in: the row's highest id
                # not self._autocast(): it reads properties that wait for this load
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    encode_tokens(model, tokens)

    def _load_onnx(self, model: CLIP, transform: Transform) -> OnnxImageEncoder:
        from shared.clip.onnx_runtime import OnnxImageEncoder, parity

        precision = "int8" if self._want_precision == "int8" else "fp32"
        onnx = OnnxImageEncoder.build(
            model, checkpoint_hash(self.model_id), precision, self._onnx_cache()
        )
        found = parity(model, onnx, transform)
        if found.min_cosine < self._min_cosine:
            raise ValueError(
                f"the onnx {precision} image encoder for {self.model_id} agrees with torch fp32 "
                f"only to cosine {found.min_cosine:.6f} on probe images, below the bound "
                f"{self._min_cosine} (ASSETRAG_ONNX_MIN_COSINE): refusing to serve it; use "
                "ASSETRAG_PRECISION=fp32 or ASSETRAG_BACKEND=torch, or check the model with "
                "`assetrag check-model`"
            )
        return onnx

    def _onnx_cache(self) -> Path:
        return self._cache_dir or Path("./data/onnx")

    def check_onnx(self, images: list[Image.Image] | None = None) -> list[Check]:
        """The onnx image tower (fp32 and int8) beside this encoder's torch fp32 one: parity
        and speed on `images` (`assetrag check-model`)."""
        from shared.clip.onnx_runtime import check_model

        model = self._ready()
        if self.device != "cpu" or self.precision != "fp32" or self.backend != "torch":
            raise ValueError("check_onnx compares against a torch fp32 encoder on the CPU")
        assert self._transform is not None
        return TORCH_THREAD.run(
            check_model,
            model,
            checkpoint_hash(self.model_id),
            self._transform,
            self._onnx_cache(),
            images,
        )

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
        """The torch precision (the text tower's; the image tower's with the torch backend)."""
        self.load()
        assert self._precision is not None
        return self._precision

    @property
    def torch_threads(self) -> int:
        """The intra-op threads its torch work runs on (the torch thread's setting)."""
        return TORCH_THREAD.run(torch.get_num_threads)

    @property
    def text_tower(self) -> str:
        """How texts are encoded: "traced" (one TorchScript call, out of the GIL) or "eager"."""
        self.load()
        return "traced" if self._text_tower is not None else "eager"

    @property
    def image_precision(self) -> str:
        """What the image tower runs at: the onnx backend's fp32 or int8, else torch's."""
        self.load()
        return self._onnx.precision if self._onnx is not None else self.precision

    # --- encoding ---------------------------------------------------------------------------

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """OpenAI CLIP's own transform: bicubic resize, centre crop, RGB, normalise.
        Thread-safe, and runs in the calling thread: it makes no torch kernel call."""
        self.load()
        assert self._transform is not None
        return self._transform(img)

    def _autocast(self) -> AbstractContextManager[Any]:
        return autocast_for(self.device, self.precision)

    def _finish(self, raw: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(raw, np.ndarray):
            raw = raw.astype(np.float32, copy=False)
            norms = np.maximum(np.linalg.norm(raw, axis=-1, keepdims=True), np.float32(1e-12))
            return raw / norms
        features = raw.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        """(N, 3, R, R) preprocessed images, or a list of N (3, R, R) ones (stacked on the
        torch thread) -> (N, dim) float32 unit vectors."""
        return TORCH_THREAD.run(self._encode_images, batch)

    def _encode_images(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        model = self._ready()
        if len(batch) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            # numpy around the runtime: a torch op here would wake OpenMP's threads, which
            # then spin on the cores ONNX Runtime's own threads are using
            pixels = (
                batch.cpu().numpy()
                if isinstance(batch, torch.Tensor)
                else np.stack([p.numpy() for p in batch])
            )
            return self._finish(self._onnx.encode(pixels))
        if not isinstance(batch, torch.Tensor):
            batch = torch.stack(list(batch))
        with torch.inference_mode(), self._autocast():
            features = model.encode_image(batch.to(self.device, non_blocking=True))
        return self._finish(features)

    def encode_texts(self, texts: list[str], full_context: bool = False) -> np.ndarray:
        """Texts -> (N, dim) float32 unit vectors; text over the context length is truncated.
        `full_context` runs OpenAI's own pass over every position (benchmarks compare it)."""
        return TORCH_THREAD.run(self._encode_texts, texts, full_context)

    def _encode_texts(self, texts: list[str], full_context: bool) -> np.ndarray:
        model = self._ready()
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        tokens = clip.tokenize(texts, context_length=self.context_length, truncate=True)
        with torch.inference_mode(), self._autocast():
            tokens = tokens.to(self.device)
            if full_context:
                features = model.encode_text(tokens)
            else:
                padded = _padded_rows(tokens)
                features = encode_tokens(model, padded, self._text_tower)[: len(texts)]
        return self._finish(features)
