"""``GeminiGenerator``: one interactive image generation (generateContent) with retries, a
per-attempt timeout, an overall retry budget and the shared requests-per-minute limit.

The async client keeps one connection pool per event loop, so one generator can be reused
across ``asyncio.run`` calls (e.g. one per Celery task).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from shared.contract import ErrorCode
from shared.gemini.config import GeminiConfig
from shared.gemini.content import (
    GenerationError,
    GenerationOutput,
    ReferenceImage,
    parse_response,
    request_config,
    request_contents,
)
from shared.gemini.limiter import RpmLimiter
from shared.gemini.retries import TIMEOUT_ERRORS, TRANSIENT_ERRORS, retry_policy
from shared.metrics import GEMINI_LATENCY

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from shared.settings import Settings


class GeminiGenerator:
    """Generates images with one reused ``genai.Client``; safe to share across coroutines."""

    def __init__(self, config: GeminiConfig, limiter: RpmLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter
        self.client: genai.Client | None = config.client()

    @classmethod
    def from_settings(
        cls, settings: Settings, redis_client: redis.Redis | redis.asyncio.Redis
    ) -> GeminiGenerator:
        """The generator a worker uses: the settings' configuration, limited fleet-wide to
        ``ASSETRAG_GEMINI_RPM`` calls a minute per model."""
        limiter = RpmLimiter(redis_client, settings.gemini_rpm, name=settings.gemini_model)
        return cls(GeminiConfig.from_settings(settings), limiter)

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aio.aclose()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    async def generate(
        self,
        prompt: str,
        references: list[ReferenceImage],
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> GenerationOutput:
        """One call (with retries): prompt + reference images (content.py's layout, `notes`
        just before the prompt) → images.

        Raises GenerationError with code blocked / no_image / upstream_error / timeout /
        not_configured.
        """
        if self.client is None:
            raise GenerationError(
                ErrorCode.generator_not_configured,
                "no Gemini API key is configured "
                "(ASSETRAG_GEMINI_API_KEY, GEMINI_API_KEY or GOOGLE_API_KEY)",
            )
        started, outcome = time.perf_counter(), "error"
        try:
            contents = request_contents(prompt, references, notes)
            response = await self._call(self.client, contents, aspect_ratio, image_size)
            outcome = "ok"
        finally:
            GEMINI_LATENCY.labels(outcome).observe(time.perf_counter() - started)
        return parse_response(response, self.config.model)

    async def _call(
        self,
        client: genai.Client,
        contents: list[types.Content],
        aspect_ratio: str | None,
        image_size: str | None,
    ) -> types.GenerateContentResponse:
        """The answer, after retries; what still fails becomes a GenerationError."""
        timeout_s, budget_s = float(self.config.timeout_s), float(self.config.retry_budget_s)
        config = request_config(aspect_ratio, image_size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s

        async def attempt() -> types.GenerateContentResponse:
            if self.limiter is not None:
                await self.limiter.acquire()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("the retry budget was spent before the call could start")
            async with asyncio.timeout(min(timeout_s, remaining)):
                return await client.aio.models.generate_content(
                    model=self.config.model, contents=contents, config=config
                )

        retrying = tenacity.AsyncRetrying(**retry_policy(self.config), sleep=asyncio.sleep)
        try:
            return await retrying(attempt)
        except genai_errors.APIError as exc:
            raise GenerationError(
                ErrorCode.upstream_error,
                exc.message or str(exc),
                status=exc.code,
                reason=exc.status,
            ) from exc
        except TIMEOUT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.timeout,
                f"Gemini did not answer within {timeout_s:g}s "
                f"(retry budget {budget_s:g}s): {exc or type(exc).__name__}",
            ) from exc
        except TRANSIENT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.upstream_error, f"could not reach Gemini: {exc or type(exc).__name__}"
            ) from exc
        except genai_errors.UnknownApiResponseError as exc:
            raise GenerationError(ErrorCode.upstream_error, f"unreadable answer: {exc}") from exc
