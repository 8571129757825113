"""The models this service offers, by name, and how a name says its family. Plain Python:
the API reads it for /v1/meta and collection creation without importing torch.

Two families: OpenAI's CLIP (`ViT-B/32`, or a checkpoint file), and open_clip's models named
`open_clip:<architecture>/<pretrained tag>` (`open_clip:ViT-B-16-SigLIP2/webli`). An
open_clip name not in the table is accepted where ASSETRAG_CLIP_MODELS lists it; its
dimension is then known once a worker has loaded it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OPEN_CLIP_PREFIX = "open_clip:"


@dataclass(frozen=True)
class OfferedModel:
    name: str
    dimension: int
    languages: str  # "en", or "multilingual (...)"
    note: str


OFFERED = (
    OfferedModel(
        "ViT-B/32",
        512,
        "en",
        "OpenAI CLIP, the default: fast, English only",
    ),
    OfferedModel(
        "open_clip:ViT-B-16-SigLIP2/webli",
        768,
        "en",
        "SigLIP 2 ViT-B/16: far better English recall than ViT-B/32 at ~4x the image cost",
    ),
    OfferedModel(
        "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k",
        512,
        "multilingual (100 languages: zh, ar, ja, ...)",
        "XLM-RoBERTa text tower with a ViT-B/32 image tower: queries in most languages",
    ),
)
OFFERED_BY_NAME = {m.name: m for m in OFFERED}


def open_clip_parts(name: str) -> tuple[str, str] | None:
    """(architecture, pretrained tag) of an open_clip name; None for OpenAI CLIP's names."""
    if not name.startswith(OPEN_CLIP_PREFIX):
        return None
    arch, sep, tag = name[len(OPEN_CLIP_PREFIX) :].partition("/")
    if not arch or not sep or not tag or "/" in tag:
        raise ValueError(
            f"an open_clip model is named open_clip:<architecture>/<pretrained tag>, not {name!r}"
        )
    return arch, tag


def is_open_clip(name: str) -> bool:
    return name.startswith(OPEN_CLIP_PREFIX)


def describe(name: str) -> tuple[str, str]:
    """(languages, note) of any model name: the table's, else what its family says."""
    if (offered := OFFERED_BY_NAME.get(name)) is not None:
        return offered.languages, offered.note
    if is_open_clip(name):
        return "see the model's card", "an open_clip model (ASSETRAG_CLIP_MODELS)"
    if name.startswith(("/", ".", "~")) or name.endswith((".pt", ".pth", ".bin")):
        return "en", "a CLIP checkpoint file on the workers"
    return "en", "OpenAI CLIP"


def local_dimension(name: str, model_dir: Path | None) -> int | None:
    """An open_clip model's embedding size from its config in the offline model folder
    (`<model_dir>/<architecture>/<tag>/open_clip_config.json`), read without loading it: a
    collection can be made on it before any worker has loaded it."""
    parts = open_clip_parts(name) if is_open_clip(name) else None
    if parts is None or model_dir is None:
        return None
    config = model_dir / parts[0] / parts[1] / "open_clip_config.json"
    try:
        dimension = json.loads(config.read_text())["model_cfg"]["embed_dim"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(dimension) if isinstance(dimension, int) else None
