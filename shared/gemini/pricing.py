"""What a generated image costs, by model, image size and mode: the table docs/generation.md
prints ("What it costs per image"), kept here once so a job's `usage` can be priced.

Google bills output images as tokens. Prices from Google's pricing page, checked November
2026 (3 Pro Image and 2.5 Flash Image from the same page's rows); the Batch API costs half.
Reference images, text and thinking tokens are billed too but are small and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImagePrice:
    usd_per_million_tokens: float
    tokens_by_size: dict[str, int]  # output tokens of one image at each size
    default_size: str

    def per_image(self, image_size: str | None, batch: bool) -> float:
        size = image_size or self.default_size
        tokens = self.tokens_by_size.get(size, self.tokens_by_size[self.default_size])
        usd = tokens * self.usd_per_million_tokens / 1_000_000
        return usd / 2 if batch else usd


PRICES: dict[str, ImagePrice] = {
    "gemini-3.1-flash-image": ImagePrice(
        60.0, {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}, "1K"
    ),
    "gemini-3-pro-image": ImagePrice(120.0, {"1K": 1120, "2K": 1120, "4K": 2000}, "1K"),
    "gemini-2.5-flash-image": ImagePrice(30.0, {"1K": 1290}, "1K"),
}


def price_per_image(model: str, image_size: str | None, batch: bool) -> float | None:
    """USD for one output image; None for a model the table does not know. Dated and
    -preview variants take their model's row."""
    for name in sorted(PRICES, key=len, reverse=True):
        if model == name or model.startswith(f"{name}-"):
            return PRICES[name].per_image(image_size, batch)
    return None
