"""open_clip's models (SigLIP 2, multilingual XLM-RoBERTa, ...) behind the interface
`ClipEncoder` has, so the embed, query, duplicates, kits and re-index paths never ask which
family they run (workers only; the API never imports this module).

A model is named `open_clip:<architecture>/<pretrained tag>` (shared/clip/catalog.py) and
comes from, in order:
- ASSETRAG_MODEL_DIR/<architecture>/<tag>/, a folder laid out as a hub repository is
  (open_clip_config.json, the weights, the tokenizer's files), read through open_clip's
  `local-dir:` loader: the offline install (`assetrag fetch-model --to DIR` writes one);
- else open_clip's published weights for the tag, downloaded on first use into
  ASSETRAG_MODEL_CACHE (the Hugging Face cache when unset), and read from there after.
Preprocessing (size, mean, std, resize mode) is the model's own config, run in numpy as
ClipEncoder's is. Text is cut to the tokenizer's context length, and for HF text towers
(masked pooling) to the batch's longest text, which changes no feature (tested); SigLIP's
text tower reads its last position with no mask, so it always runs its full 64 tokens.
The image tower can run on ONNX Runtime (fp32 or int8), checked for parity as CLIP's is.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from shared.clip.catalog import open_clip_parts
from shared.clip.encoder import (
    Transform,
    check_options,
    numpy_transform,
    resolve_device,
    resolve_precision,
)
from shared.clip.torch_thread import TORCH_THREAD

if TYPE_CHECKING:
    from shared.clip.onnx_runtime import Check, OnnxImageEncoder
    from shared.settings import Settings

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def local_folder(name: str, model_dir: Path | None) -> Path | None:
    """The offline folder of an open_clip model, when ASSETRAG_MODEL_DIR holds one."""
    parts = open_clip_parts(name)
    if parts is None or model_dir is None:
        return None
    folder = model_dir.expanduser() / parts[0] / parts[1]
    return folder if (folder / "open_clip_config.json").is_file() else None


def _open(name: str, model_dir: Path | None, cache: Path | None, device: str) -> tuple[Any, ...]:
    """(model, eval transform, tokenizer, weights hash) through open_clip's own loaders."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm and transformers warn on import
        import open_clip

    parts = open_clip_parts(name)
    assert parts is not None
    folder = local_folder(name, model_dir)
    cache_dir = str(cache.expanduser()) if cache else None
    try:
        if folder is not None:
            source = f"local-dir:{folder}"
            model, _, transform = open_clip.create_model_and_transforms(source, device=device)
            weights = _hash_file(folder)
        else:
            source, tag = parts
            model, _, transform = open_clip.create_model_and_transforms(
                source, pretrained=tag, device=device, cache_dir=cache_dir
            )
            weights = hashlib.sha256(name.encode()).hexdigest()  # a tag's weights never change
        tokenizer = open_clip.get_tokenizer(source, cache_dir=cache_dir)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ValueError(f"cannot load {name}: {exc}") from exc
    return model.eval(), transform, tokenizer, weights


def _hash_file(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as f:
            digest.update(f.read(1 << 20))  # the header and first tensors: enough to tell
    return digest.hexdigest()


def _resolution(model: Any) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def sequence_first(model: Any) -> None:
    """open_clip's own transformers (ViT image towers, SigLIP's text tower) switched to the
    sequence-first layout OpenAI CLIP runs, the same weights and sums in another order.

    Why: batch-first, nn.MultiheadAttention transposes its input and projects the strided
    (L, N, D) view; torch multiplies that by expanding the (3D, D) in-projection weight to
    every position and copying it (aten::copy_ of (50, 768, 2304) a layer, 64 % of a ViT-B/32
    pass under bf16). Measured on the 2-core EPYC: the xlm-roberta ViT-B/32 image tower went
    from 4.3 to 22-30 images/s under bf16 and 5-14 to 13.5 at fp32 (bench/models.py).
    """
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    for module in model.modules():
        blocks = getattr(module, "resblocks", ())
        if type(module) is not Transformer or not all(
            type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") for b in blocks
        ):
            continue  # CustomTransformer and cross-attention blocks stay as built
        module.batch_first = False
        for block in blocks:
            block.attn.batch_first = False


def _masks_padding(model: Any) -> bool:
    """True for HF text towers: their pooling reads the attention mask, so trailing padding
    can be cut away without changing a feature."""
    return model.text.__class__.__name__ == "HFTextEncoder"


class OpenClipEncoder:
    """The open_clip family's encoder: same methods and properties as `ClipEncoder`."""

    def __init__(
        self,
        model: str,
        device: str = "auto",
        precision: str = "auto",
        backend: str = "torch",
        cache_dir: Path | None = None,
        min_cosine: float = 0.99,
        model_dir: Path | None = None,
        download_dir: Path | None = None,
    ) -> None:
        check_options(device, precision, backend)
        open_clip_parts(model)  # a malformed name fails here, before any load
        self.model_id = model
        self.backend = backend
        self._want_device = "cpu" if backend == "onnx" else device
        self._want_precision = precision
        self._cache_dir = cache_dir
        self._min_cosine = min_cosine
        self._model_dir = model_dir
        self._download_dir = download_dir
        self._lock = threading.Lock()
        self._model: Any = None
        self._onnx: OnnxImageEncoder | None = None
        self._transform: Transform | None = None
        self._tokenizer: Any = None
        self._weights = ""
        self._dim = 0
        self._device: str | None = None
        self._precision: str | None = None

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> OpenClipEncoder:
        return cls(
            model,
            settings.device,
            settings.precision,
            settings.backend,
            settings.data_dir / "onnx",
            settings.onnx_min_cosine,
            settings.model_dir,
            settings.model_cache,
        )

    # --- loading ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        TORCH_THREAD.run(self._load)

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            device = resolve_device(self._want_device)
            precision = resolve_precision(self._want_precision, device)
            model, transform, tokenizer, weights = _open(
                self.model_id, self._model_dir, self._download_dir, device
            )
            model.visual.input_resolution = _resolution(model)  # what the onnx export reads
            sequence_first(model)
            if device == "cuda" and precision == "fp16":
                model = model.half()
            self._transform = numpy_transform(transform)
            self._tokenizer, self._weights = tokenizer, weights
            self._device, self._precision = device, precision
            res = model.visual.input_resolution
            with torch.inference_mode():
                probe = model.encode_image(
                    torch.zeros(1, 3, res, res, device=device).to(next(model.parameters()).dtype)
                )
            self._dim = int(probe.shape[-1])
            if self.backend == "onnx":
                self._onnx = self._load_onnx(model, self._transform)
            self._model = model

    def _load_onnx(self, model: Any, transform: Transform) -> OnnxImageEncoder:
        from shared.clip.onnx_runtime import OnnxImageEncoder, parity

        precision = "int8" if self._want_precision == "int8" else "fp32"
        onnx = OnnxImageEncoder.build(model, self._weights, precision, self._onnx_cache())
        found = parity(model, onnx, transform)
        if found.min_cosine < self._min_cosine:
            raise ValueError(
                f"the onnx {precision} image encoder for {self.model_id} agrees with torch fp32 "
                f"only to cosine {found.min_cosine:.6f} on probe images, below the bound "
                f"{self._min_cosine} (ASSETRAG_ONNX_MIN_COSINE): refusing to serve it"
            )
        return onnx

    def _onnx_cache(self) -> Path:
        return self._cache_dir or Path("./data/onnx")

    def check_onnx(self, images: list[Image.Image] | None = None) -> list[Check]:
        from shared.clip.onnx_runtime import check_model

        model = self._ready()
        if self.device != "cpu" or self.precision != "fp32" or self.backend != "torch":
            raise ValueError("check_onnx compares against a torch fp32 encoder on the CPU")
        assert self._transform is not None
        return TORCH_THREAD.run(
            check_model, model, self._weights, self._transform, self._onnx_cache(), images
        )

    def _ready(self) -> Any:
        self.load()
        return self._model

    # --- what the model is ------------------------------------------------------------------

    @property
    def dim(self) -> int:
        self.load()
        return self._dim

    @property
    def input_resolution(self) -> int:
        return int(self._ready().visual.input_resolution)

    @property
    def context_length(self) -> int:
        self.load()
        return int(self._tokenizer.context_length)

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

    @property
    def torch_threads(self) -> int:
        return TORCH_THREAD.run(torch.get_num_threads)

    @property
    def text_tower(self) -> str:
        """Always "eager": only OpenAI CLIP's text tower is traced so far."""
        return "eager"

    @property
    def image_precision(self) -> str:
        self.load()
        return self._onnx.precision if self._onnx is not None else self.precision

    # --- encoding ---------------------------------------------------------------------------

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """The model's own transform (its size, mean, std, resize mode), numpy inside."""
        self.load()
        assert self._transform is not None
        return self._transform(img)

    def _autocast(self) -> AbstractContextManager[Any]:
        dtype = _DTYPES.get(self.precision)
        if dtype is None or (self.device == "cuda" and self.precision == "fp16"):
            return nullcontext()
        return torch.autocast(device_type=self.device, dtype=dtype)

    @staticmethod
    def _finish(raw: torch.Tensor | np.ndarray) -> np.ndarray:
        features = torch.as_tensor(raw).float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        return TORCH_THREAD.run(self._encode_images, batch)

    def _encode_images(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        model = self._ready()
        if len(batch) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            pixels = (
                batch.cpu().numpy()
                if isinstance(batch, torch.Tensor)
                else np.stack([p.numpy() for p in batch])
            )
            return self._finish(self._onnx.encode(pixels))
        if not isinstance(batch, torch.Tensor):
            batch = torch.stack(list(batch))
        dtype = next(model.parameters()).dtype
        with torch.inference_mode(), self._autocast():
            features = model.encode_image(batch.to(self.device, dtype))
        return self._finish(features)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """The model's tokenizer: cut at its context length, padded to it."""
        self.load()
        return self._tokenizer(texts)

    def encode_texts(self, texts: list[str], full_context: bool = False) -> np.ndarray:
        """Texts -> (N, dim) unit vectors. `full_context` keeps every padded position (the
        reference the trimmed pass is checked against)."""
        return TORCH_THREAD.run(self._encode_texts, texts, full_context)

    def _encode_texts(self, texts: list[str], full_context: bool) -> np.ndarray:
        model = self._ready()
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(texts)
        if not full_context and _masks_padding(model):
            tokens = _trim_padding(tokens, int(model.text.config.pad_token_id))
        with torch.inference_mode(), self._autocast():
            features = model.encode_text(tokens.to(self.device))
        return self._finish(features)


def _trim_padding(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """Columns after the batch's longest text (all padding) cut away."""
    used = (tokens != pad).any(dim=0).nonzero()
    longest = int(used.max()) + 1 if len(used) else 1
    return tokens[:, :longest]
