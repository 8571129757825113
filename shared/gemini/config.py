"""``GeminiConfig``: how this service speaks to Gemini (key, endpoint, model, timeouts,
retries), read from the settings in one place, and the google-genai client built from it.

Facts this module relies on (checked against google-genai 3.4.0):

- ``HttpOptions.timeout`` is in **milliseconds** (the SDK divides by 1000 before handing it to
  httpx, and sends ``X-Server-Timeout: ceil(seconds)``). httpx timeouts are per operation
  (connect/read/write), not for the whole call, so the generator also wraps every attempt in
  ``asyncio.timeout``.
- With a custom ``base_url`` and an API key the SDK still appends the API version:
  ``{base_url}/{api_version}/models/{model}:generateContent`` (``v1`` by default in 3.4.0,
  ``GOOGLE_GENAI_API_VERSION`` overrides it). A base URL is therefore given without a version,
  e.g. ``http://127.0.0.1:8765``.
- The SDK retries nothing unless given ``HttpRetryOptions``; with aiohttp installed it
  otherwise retries connection errors implicitly. Retries are ours (``retries.py``), so the
  client is told ``attempts=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google import genai
from google.genai import types

if TYPE_CHECKING:
    from shared.settings import Settings


@dataclass(frozen=True)
class GeminiConfig:
    """What the generator and the batches share: built once from the settings."""

    api_key: str | None
    model: str
    base_url: str | None = None
    timeout_s: float = 120
    max_attempts: int = 5
    retry_budget_s: float = 180
    # exponential backoff between attempts when the server names no delay (tests shorten it)
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiConfig:
        return cls(
            api_key=settings.gemini_api_key,
            model=settings.gemini_model,
            base_url=settings.gemini_base_url,
            timeout_s=settings.gemini_timeout_s,
            max_attempts=settings.gemini_max_attempts,
            retry_budget_s=settings.gemini_retry_budget_s,
        )

    @property
    def key(self) -> str | None:
        """The API key, None when none (or only blanks) is configured."""
        return (self.api_key or "").strip() or None

    def client(self, api_version: str | None = None) -> genai.Client | None:
        """A google-genai client for this configuration; None without an API key."""
        key = self.key
        if key is None:
            return None
        options: dict[str, Any] = {
            "base_url": self.base_url or None,
            "timeout": max(1, int(float(self.timeout_s) * 1000)),  # milliseconds
            # Retries are ours (they honour Retry-After); the SDK must not add its own.
            "retry_options": types.HttpRetryOptions(attempts=1),
        }
        if api_version is not None:
            options["api_version"] = api_version
        return genai.Client(api_key=key, http_options=types.HttpOptions(**options))
