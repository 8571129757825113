"""The one place Gemini is spoken to: image generation through google-genai, interactive
(``GeminiGenerator``) or through the Batch API (``GeminiBatches``), with retries and a
fleet-wide requests-per-minute limit. No other product module imports google-genai.

- ``config``: ``GeminiConfig``, the one reading of the Gemini settings, and the SDK client
- ``content``: what goes into a generateContent call and what comes out (images or an error)
- ``retries``: what is retried, how long to wait (Retry-After, RetryInfo), the retry policy
- ``limiter``: ``RpmLimiter``, the requests-per-minute limit shared through Redis
- ``client``: ``GeminiGenerator``, one interactive call with retries
- ``batches``: ``GeminiBatches``, the Batch API

Every module logs as ``shared.gemini``, one logger for the package.

No API key: the generator and the batches can still be built (so workers start without one)
and ``configured`` is False; a call raises ``GenerationError("generator_not_configured")``.
"""

from shared.gemini.batches import (
    BATCH_API_VERSION,
    BATCH_DONE_STATES,
    BatchOutcome,
    BatchRequest,
    GeminiBatches,
)
from shared.gemini.client import GeminiGenerator
from shared.gemini.config import GeminiConfig
from shared.gemini.content import (
    BLOCK_FINISH_REASONS,
    GenerationError,
    GenerationOutput,
    ImageBytes,
    ReferenceImage,
    caption,
    layout,
    parse_response,
    request_config,
    request_contents,
)
from shared.gemini.limiter import RpmLimiter
from shared.gemini.retries import RETRY_HTTP_CODES, RETRY_RPC_STATUSES, retry_after_s

__all__ = [
    "BATCH_API_VERSION",
    "BATCH_DONE_STATES",
    "BLOCK_FINISH_REASONS",
    "RETRY_HTTP_CODES",
    "RETRY_RPC_STATUSES",
    "BatchOutcome",
    "BatchRequest",
    "GeminiBatches",
    "GeminiConfig",
    "GeminiGenerator",
    "GenerationError",
    "GenerationOutput",
    "ImageBytes",
    "ReferenceImage",
    "caption",
    "layout",
    "RpmLimiter",
    "parse_response",
    "request_config",
    "request_contents",
    "retry_after_s",
]
