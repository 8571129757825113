"""Which encoder a model name gets: open_clip's for `open_clip:<arch>/<tag>`, OpenAI CLIP's for
the rest (a published name or a checkpoint file). The one place that asks; everything after
it holds an `Encoder` and never knows the family. Workers only (it imports torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from shared.clip.catalog import is_open_clip

if TYPE_CHECKING:
    from shared.clip.encoder import ClipEncoder
    from shared.clip.open_clip_encoder import OpenClipEncoder
    from shared.settings import Settings

Encoder: TypeAlias = "ClipEncoder | OpenClipEncoder"


def encoder_for(model: str, settings: Settings) -> Encoder:
    """An encoder for `model` with the service's device, precision, backend and model folders
    (not loaded yet)."""
    if is_open_clip(model):
        from shared.clip.open_clip_encoder import OpenClipEncoder

        return OpenClipEncoder.from_settings(model, settings)
    from shared.clip.encoder import ClipEncoder

    return ClipEncoder.from_settings(model, settings)
