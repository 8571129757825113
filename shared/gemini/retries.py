"""Which failed Gemini calls are tried again, how long to wait first, and the retry policy the
interactive and the batch calls share (tenacity, sync or async).

Facts this module relies on (checked against google-genai 3.4.0):

- The SDK never honours ``Retry-After`` (its own waits are plain exponential jitter), so
  retries are done here with tenacity around each call, and the SDK makes one attempt.
- A failed call raises ``google.genai.errors.ClientError`` / ``ServerError`` (both
  ``APIError``) with ``.code`` (HTTP status), ``.status`` (``RESOURCE_EXHAUSTED``, ...),
  ``.message``, ``.details`` (the parsed JSON body) and ``.response`` (the httpx/httpx2
  response, whose ``.headers`` carry ``Retry-After``). Google usually states the delay in the
  body instead, as a ``google.rpc.RetryInfo`` detail (``"retryDelay": "12s"``): both are read.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Any

import tenacity
from google.genai import errors as genai_errors

from shared.gemini.config import GeminiConfig
from shared.metrics import GEMINI_RETRIES

# One logger for the whole package: operators (and the scale-out test) filter on it.
logger = logging.getLogger("shared.gemini")

#: HTTP statuses retried: request timeout, rate limit, server errors
RETRY_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_RPC_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"}
)


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(connection-level errors, timeout errors) of whichever HTTP stacks are installed."""
    transient: list[type[BaseException]] = [ConnectionError]
    timeouts: list[type[BaseException]] = [TimeoutError]
    for name in ("httpx", "httpx2"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        transient.append(mod.TransportError)
        timeouts.append(mod.TimeoutException)
    try:
        import aiohttp

        transient.append(aiohttp.ClientConnectionError)
        timeouts.append(aiohttp.ServerTimeoutError)
    except ImportError:
        pass
    return tuple(transient), tuple(timeouts)


TRANSIENT_ERRORS, TIMEOUT_ERRORS = _transport_errors()


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.lower())
    except AttributeError:
        return None
    if value is None and isinstance(headers, dict):
        for key, val in headers.items():
            if str(key).lower() == name.lower():
                return str(val)
    return None if value is None else str(value)


def _parse_seconds(value: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value.removesuffix("s")))
    except ValueError:
        pass
    try:  # HTTP-date form of Retry-After
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_s(exc: BaseException | None) -> float | None:
    """The delay the server asked for: ``Retry-After`` header, else a RetryInfo detail."""
    if not isinstance(exc, genai_errors.APIError):
        return None
    header = _header(getattr(getattr(exc, "response", None), "headers", None), "Retry-After")
    if header is not None:
        parsed = _parse_seconds(header)
        if parsed is not None:
            return parsed
    details = exc.details
    if isinstance(details, dict):
        inner = details.get("error")
        details = (inner if isinstance(inner, dict) else details).get("details")
    if isinstance(details, list):
        for detail in details:
            if (
                isinstance(detail, dict)
                and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo")
                and detail.get("retryDelay") is not None
            ):
                return _parse_seconds(str(detail["retryDelay"]))
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in RETRY_HTTP_CODES or (exc.status or "") in RETRY_RPC_STATUSES
    return isinstance(exc, TRANSIENT_ERRORS + TIMEOUT_ERRORS)


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Honour the server's Retry-After (plus up to 10% jitter), else exponential jitter."""

    def __init__(self, fallback: tenacity.wait.wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after_s(exc)
        if asked is not None:
            return asked + random.uniform(0, min(1.0, asked * 0.1))
        return float(self.fallback(retry_state))


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    GEMINI_RETRIES.inc()
    logger.warning(
        "gemini attempt %d failed (%s); retrying in %.2fs",
        retry_state.attempt_number,
        exc,
        sleep,
    )


def retry_policy(config: GeminiConfig) -> dict[str, Any]:
    """The arguments of ``tenacity.Retrying`` / ``AsyncRetrying`` for this configuration: at
    most ``max_attempts`` tries within ``retry_budget_s``, waiting as the server asks."""
    return {
        "stop": (
            tenacity.stop_after_attempt(max(1, int(config.max_attempts)))
            | tenacity.stop_before_delay(float(config.retry_budget_s))
        ),
        "wait": _WaitRetryAfter(
            tenacity.wait_exponential_jitter(
                initial=config.backoff_initial_s,
                max=config.backoff_max_s,
                jitter=config.backoff_initial_s,
            )
        ),
        "retry": tenacity.retry_if_exception(is_retryable),
        "before_sleep": _log_retry,
        "reraise": True,
    }
