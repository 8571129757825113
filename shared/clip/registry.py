"""Which CLIP models (both families) the workers run, and their embedding dimensions.

Workers record a model's dimension in Redis when they load it, so the API (which never
loads a model) can create a collection with the right dimension.
"""

from __future__ import annotations

import redis

from shared import keys
from shared.clip.catalog import OFFERED

# Dimensions of OpenAI's published CLIP models, for before any worker has loaded one.
KNOWN_DIMENSIONS = {
    "RN50": 1024,
    "RN101": 512,
    "RN50x4": 640,
    "RN50x16": 768,
    "RN50x64": 1024,
    "ViT-B/32": 512,
    "ViT-B/16": 512,
    "ViT-L/14": 768,
    "ViT-L/14@336px": 768,
    **{m.name: m.dimension for m in OFFERED},
}


class ModelRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def record(self, model_id: str, dimension: int) -> None:
        self.redis.set(keys.model_dimension(model_id), dimension)

    def dimension(self, model_id: str) -> int | None:
        raw = self.redis.get(keys.model_dimension(model_id))
        if raw is not None:
            return int(raw)
        return KNOWN_DIMENSIONS.get(model_id)
