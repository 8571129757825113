"""OpenAI's published CLIP checkpoints on disk: fetched once into the folder `clip.load` reads
(~/.cache/clip), before a worker starts, so that pods sharing one cache volume download a
model once and never read half a file. A checkpoint given as a file path needs nothing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

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
