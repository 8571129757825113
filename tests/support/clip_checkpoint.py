"""Real CLIP architectures with random weights, saved the way OpenAI's files are.

The tiny one stands in for ViT-B/32 in tests (embed dim 48, not 512, so nothing hard-coded
survives); the ViT-B/32-shaped one is for benchmarks. Both go through the real load path:
`clip.model.build_model` infers every size from the state dict's keys and shapes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # clip imports pkg_resources, which warns
    from clip.model import CLIP

SEED = 20240611


def _build(seed: int, **arch: int) -> CLIP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**arch)  # initialize_parameters() draws from the seeded generator
    return model.float().eval()


def _save(model: CLIP, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)
    elif fmt == "torchscript":
        res = model.visual.input_resolution
        example = (
            torch.zeros(1, 3, res, res),
            torch.zeros(1, model.context_length, dtype=torch.long),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated; OpenAI's files still use it
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, str(path))
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r} (state_dict or torchscript)")
    return path


def build_tiny_checkpoint(path: Path, embed_dim: int = 48, fmt: str = "state_dict") -> Path:
    """A tiny ViT CLIP (vision and text width 64, 2 layers each, 64 px, patch 16)."""
    model = _build(
        SEED,
        embed_dim=embed_dim,
        image_resolution=64,
        vision_layers=2,
        vision_width=64,  # build_model infers heads = width // 64 = 1
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,  # must equal width // 64, as build_model infers it
        transformer_layers=2,
    )
    return _save(model, Path(path), fmt)


def build_vit_b32_checkpoint(path: Path, fmt: str = "state_dict") -> Path:
    """ViT-B/32's exact shapes (about 150M parameters) with random weights."""
    model = _build(
        SEED,
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    )
    return _save(model, Path(path), fmt)
