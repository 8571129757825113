"""Published weights on disk, fetched once before a worker starts (a pod's init container), so
that pods sharing one volume download a model once and never read half of it:
- OpenAI's CLIP checkpoints into the folder `clip.load` reads (~/.cache/clip); a checkpoint
  given as a file path needs nothing;
- open_clip models (`open_clip:<arch>/<tag>`) into ASSETRAG_MODEL_DIR's layout, one folder a
  model, which the encoder reads before any download (shared/clip/open_clip_encoder.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# clip.load's own download_root default: where the encoder finds what this fetched.
DEFAULT_ROOT = Path("~/.cache/clip")


def fetch_weights(spec: str, root: Path | None = None) -> Path | None:
    """The file of a published model's checkpoint under `root`, downloaded unless it is
    there with the right SHA-256; None for a spec that is not a published model's name.

    The download lands in a scratch folder inside `root` (clip checks its SHA-256 there) and
    is renamed into place, an atomic step: two pods fetching at once each write their own
    file, and a pod that dies mid-download leaves no file the encoder would trust.
    """
    import clip  # torch comes with it: only the worker image runs this

    urls: dict[str, str] = clip.clip._MODELS
    if spec not in urls:
        return None
    url = urls[spec]
    folder = (root or DEFAULT_ROOT).expanduser()
    target = folder / url.rsplit("/", 1)[1]
    if target.is_file() and _sha256(target) == url.split("/")[-2]:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetching-") as scratch:
        os.replace(clip.clip._download(url, scratch), target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- open_clip models: a folder per model under ASSETRAG_MODEL_DIR ---------------------------

# What AutoTokenizer may read from a tokenizer's hub repo (a repo holds some of these); its
# config.json is left out on purpose: in a timm repo it is timm's, not a tokenizer's.
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "spiece.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
]
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def hub_download(repo_id: str, patterns: list[str], folder: Path) -> None:
    """The files of `repo_id` matching `patterns` into `folder` (none when none match). The
    one call here that reaches the Hugging Face hub: tests replace it."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, allow_patterns=patterns, local_dir=folder)


def fetch_open_clip(name: str, model_dir: Path) -> tuple[Path, bool]:
    """(the folder, whether it was downloaded now) of open_clip model `name` in the offline
    layout `<model_dir>/<arch>/<tag>/` (docs/models.md), downloaded unless it is there.

    What a pretrained tag loads, as open_clip itself gets it: the weights from the hub repo
    its pretrained config names (safetensors first), the model and preprocess config from
    open_clip's own tables, the tokenizer from the text config's `hf_tokenizer_name` repo and,
    for a Hugging Face text tower, that tower's config.json. All of it lands in a scratch
    folder beside the target, renamed into place only once complete: pods starting together
    each fetch their own and the first rename wins; one that dies leaves no folder in place.
    """
    from shared.clip.catalog import open_clip_parts

    parts = open_clip_parts(name)
    if parts is None:
        raise ValueError(f"{name!r} is not an open_clip model name")
    target = model_dir.expanduser() / parts[0] / parts[1]
    if (target / "open_clip_config.json").is_file():
        return target, False
    model_cfg, preprocess, hub = _tag_config(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".fetching-{parts[1]}-") as tmp:
        scratch = Path(tmp) / parts[1]
        scratch.mkdir()
        _download_into(scratch, target, model_cfg, preprocess, hub)
        try:
            os.rename(scratch, target)
        except OSError:  # another pod renamed its own copy first: keep that one
            if not (target / "open_clip_config.json").is_file():
                raise
            return target, False
    return target, True


def _tag_config(arch: str, tag: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(model config, preprocess config, hub reference `org/repo/[file]`) of a pretrained tag,
    from open_clip's own tables."""
    import open_clip

    model_cfg = open_clip.get_model_config(arch)
    pretrained = open_clip.get_pretrained_cfg(arch, tag)
    if model_cfg is None or not pretrained.get("hf_hub"):
        raise ValueError(f"open_clip publishes no hub weights for {arch}/{tag}")
    preprocess = {k: pretrained[k] for k in PREPROCESS_KEYS if k in pretrained}
    return copy.deepcopy(model_cfg), preprocess, str(pretrained["hf_hub"])


def _download_into(
    scratch: Path, target: Path, model_cfg: dict[str, Any], preprocess: dict[str, Any], hub: str
) -> None:
    repo, filename = os.path.split(hub)  # as open_clip reads it: 'org/repo/' or 'org/repo/file'
    _fetch_weights_file(repo, filename, scratch)
    text = model_cfg.setdefault("text_cfg", {})
    if text.get("hf_tokenizer_name"):
        hub_download(str(text["hf_tokenizer_name"]), TOKENIZER_FILES, scratch)
    if text.get("hf_model_name"):  # the tower is built from its config.json: read it here
        hub_download(str(text["hf_model_name"]), ["config.json"], scratch)
        if not (scratch / "config.json").is_file():
            raise OSError(f"{text['hf_model_name']} has no config.json on the hub")
        text["hf_model_name"] = str(target)
    _drop_hub_metadata(scratch)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    # written last: a folder is whole once this file is in it (what the loaders look for)
    (scratch / "open_clip_config.json").write_text(json.dumps(config, indent=2))


def _fetch_weights_file(repo: str, filename: str, scratch: Path) -> None:
    """The weights as open_clip picks them: the safetensors alternative first, then the file
    the pretrained config names (open_clip_pytorch_model.bin by default)."""
    wanted = filename or "open_clip_pytorch_model.bin"
    stem = wanted.rsplit(".", 1)[0]
    safe = "open_clip_model.safetensors" if not filename else f"{stem}.safetensors"
    for candidate in dict.fromkeys((safe, wanted)):
        hub_download(repo, [candidate], scratch)
        if (scratch / candidate).is_file():
            return
    raise OSError(f"{repo} has neither {safe} nor {wanted} on the hub")


def _drop_hub_metadata(folder: Path) -> None:
    """huggingface_hub's download bookkeeping (.cache/) is not part of the model."""
    shutil.rmtree(folder / ".cache", ignore_errors=True)
