"""The one place Gemini is spoken to: image generation through google-genai, with retries and
a fleet-wide requests-per-minute limit.

Facts this module relies on (checked against google-genai 3.4.0):

- ``HttpOptions.timeout`` is in **milliseconds** (the SDK divides by 1000 before handing it to
  httpx, and sends ``X-Server-Timeout: ceil(seconds)``). httpx timeouts are per operation
  (connect/read/write), not for the whole call, so every attempt is also wrapped in
  ``asyncio.timeout``.
- With a custom ``base_url`` and an API key the SDK still appends the API version:
  ``{base_url}/{api_version}/models/{model}:generateContent`` (``v1`` by default in 3.4.0,
  ``GOOGLE_GENAI_API_VERSION`` overrides it). A base URL is therefore given without a version,
  e.g. ``http://127.0.0.1:8765``.
- The SDK retries nothing unless given ``HttpRetryOptions`` and never honours ``Retry-After``
  (its waits are plain exponential jitter). Retries are therefore done here with tenacity
  around each call, and the SDK is told ``attempts=1`` so that it never retries on its own
  (with aiohttp installed it otherwise retries connection errors implicitly).
- A failed call raises ``google.genai.errors.ClientError`` / ``ServerError`` (both
  ``APIError``) with ``.code`` (HTTP status), ``.status`` (``RESOURCE_EXHAUSTED``, ...),
  ``.message``, ``.details`` (the parsed JSON body) and ``.response`` (the httpx/httpx2
  response, whose ``.headers`` carry ``Retry-After``). Google usually states the delay in the
  body instead, as a ``google.rpc.RetryInfo`` detail (``"retryDelay": "12s"``): both are read.
- The async client keeps one connection pool per event loop, so one ``GeminiGenerator`` can be
  reused across ``asyncio.run`` calls (e.g. one per Celery task).

Request layout: one user turn whose parts are the prompt text FIRST, then the reference images
as inline parts in the order given (the layout of Google's image-editing examples,
``contents=[prompt, image1, image2]``).

No API key: the generator can still be built (so workers start without one) and
``configured`` is False; ``generate`` raises ``GenerationError("generator_not_configured")``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from redis.commands.core import AsyncScript, Script

from shared import keys
from shared.contract import ErrorCode
from shared.errors import CodedError
from shared.metrics import GEMINI_LATENCY, GEMINI_RETRIES

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: finish reasons that mean the answer was withheld (a block), not that the model chose text
BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "JAILBREAK",
    }
)
_BLOCK_MARKERS = ("SAFETY", "PROHIBITED", "BLOCK", "RECITATION")

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


_TRANSIENT_ERRORS, _TIMEOUT_ERRORS = _transport_errors()


class GenerationError(CodedError):
    """A generation that produced no image: blocked, no_image, upstream_error, timeout or
    generator_not_configured.

    ``status`` is the upstream HTTP status (upstream_error); ``reason`` is the block or finish
    reason (blocked, no_image) or Google's RPC status string (upstream_error).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        extra = []
        if self.status is not None:
            extra.append(f"status={self.status}")
        if self.reason:
            extra.append(f"reason={self.reason}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.code}: {self.message}{suffix}"


@dataclass
class ImageBytes:
    data: bytes
    mime_type: str


@dataclass
class GenerationOutput:
    images: list[ImageBytes]
    text: str
    model: str


def _enum_str(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


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


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in RETRY_HTTP_CODES or (exc.status or "") in RETRY_RPC_STATUSES
    return isinstance(exc, _TRANSIENT_ERRORS + _TIMEOUT_ERRORS)


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


class GeminiGenerator:
    """Generates images with one reused ``genai.Client``; safe to share across coroutines."""

    def __init__(
        self,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 120,
        max_attempts: int = 5,
        retry_budget_s: float = 180,
        limiter: RpmLimiter | None = None,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_attempts = max(1, int(max_attempts))
        self.retry_budget_s = float(retry_budget_s)
        self.limiter = limiter
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.api_key = (api_key or "").strip() or None
        self.client: genai.Client | None = None
        if self.api_key is not None:
            self.client = genai.Client(
                api_key=self.api_key,
                http_options=types.HttpOptions(
                    base_url=base_url or None,
                    timeout=max(1, int(self.timeout_s * 1000)),  # milliseconds
                    # Retries are ours (they honour Retry-After); the SDK must not add its own.
                    retry_options=types.HttpRetryOptions(attempts=1),
                ),
            )

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aio.aclose()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _retrying(self) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(
            stop=(
                tenacity.stop_after_attempt(self.max_attempts)
                | tenacity.stop_before_delay(self.retry_budget_s)
            ),
            wait=_WaitRetryAfter(
                tenacity.wait_exponential_jitter(
                    initial=self.backoff_initial_s,
                    max=self.backoff_max_s,
                    jitter=self.backoff_initial_s,
                )
            ),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
            sleep=asyncio.sleep,
        )

    async def generate(
        self,
        prompt: str,
        references: list[tuple[bytes, str]],
        aspect_ratio: str | None = None,
        image_size: str | None = None,
    ) -> GenerationOutput:
        """One call (with retries): prompt + references (bytes, mime type) → images.

        Raises GenerationError with code blocked / no_image / upstream_error / timeout /
        not_configured.
        """
        if self.client is None:
            raise GenerationError(
                ErrorCode.generator_not_configured,
                "no Gemini API key is configured "
                "(ASSETRAG_GEMINI_API_KEY, GEMINI_API_KEY or GOOGLE_API_KEY)",
            )
        contents = request_contents(prompt, references)
        config = request_config(aspect_ratio, image_size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget_s
        client = self.client

        async def attempt() -> types.GenerateContentResponse:
            if self.limiter is not None:
                await self.limiter.acquire()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("the retry budget was spent before the call could start")
            async with asyncio.timeout(min(self.timeout_s, remaining)):
                return await client.aio.models.generate_content(
                    model=self.model, contents=contents, config=config
                )

        response: types.GenerateContentResponse
        started, outcome = time.perf_counter(), "error"
        try:
            response = await self._retrying()(attempt)
            outcome = "ok"
        except genai_errors.APIError as exc:
            raise GenerationError(
                ErrorCode.upstream_error,
                exc.message or str(exc),
                status=exc.code,
                reason=exc.status,
            ) from exc
        except _TIMEOUT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.timeout,
                f"Gemini did not answer within {self.timeout_s:g}s "
                f"(retry budget {self.retry_budget_s:g}s): {exc or type(exc).__name__}",
            ) from exc
        except _TRANSIENT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.upstream_error, f"could not reach Gemini: {exc or type(exc).__name__}"
            ) from exc
        except genai_errors.UnknownApiResponseError as exc:
            raise GenerationError(ErrorCode.upstream_error, f"unreadable answer: {exc}") from exc
        finally:
            GEMINI_LATENCY.labels(outcome).observe(time.perf_counter() - started)
        return parse_response(response, self.model)


def request_contents(prompt: str, references: list[tuple[bytes, str]]) -> list[types.Content]:
    parts = [types.Part.from_text(text=prompt)]
    parts += [types.Part.from_bytes(data=data, mime_type=mime) for data, mime in references]
    return [types.Content(role="user", parts=parts)]


def request_config(aspect_ratio: str | None, image_size: str | None) -> types.GenerateContentConfig:
    image_config = None
    if aspect_ratio or image_size:
        image_config = types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size)
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"], image_config=image_config
    )


def parse_response(response: types.GenerateContentResponse, default_model: str) -> GenerationOutput:
    """The final images and text of an answer; a block or an answer without an image raises
    GenerationError (blocked / no_image)."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_str(feedback.block_reason)
        raise GenerationError(
            ErrorCode.blocked,
            feedback.block_reason_message or f"the prompt was blocked ({reason})",
            reason=reason,
        )
    images: list[ImageBytes] = []
    texts: list[str] = []
    finish: list[tuple[str, str | None]] = []
    for candidate in response.candidates or []:
        reason = _enum_str(candidate.finish_reason)
        if reason:
            finish.append((reason, candidate.finish_message))
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.thought:  # drafts of a thinking model: not results
                continue
            blob = part.inline_data
            if blob is not None and blob.data:
                mime = blob.mime_type or "image/png"
                if mime.startswith("image/"):
                    images.append(ImageBytes(data=blob.data, mime_type=mime))
            elif part.text:
                texts.append(part.text)
    text = "".join(texts)
    model = response.model_version or default_model
    if images:
        return GenerationOutput(images=images, text=text, model=model)
    for reason, message in finish:
        if reason in BLOCK_FINISH_REASONS or any(m in reason for m in _BLOCK_MARKERS):
            detail = message or text
            raise GenerationError(
                ErrorCode.blocked,
                f"the image was blocked ({reason})" + (f": {detail}" if detail else ""),
                reason=reason,
            )
    reason = finish[0][0] if finish else None
    raise GenerationError(
        ErrorCode.no_image,
        "the model returned no image"
        + (f" (finish reason {reason})" if reason and reason != "STOP" else "")
        + (f": {text}" if text else ""),
        reason=reason,
    )


_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""


class RpmLimiter:
    """A requests-per-minute limit shared by every process on one Redis.

    A sliding-window log in a sorted set (``keys.gemini_rpm(name)``), checked and updated
    atomically by a Lua script on Redis's own clock, so hosts with skewed clocks agree. At most
    ``rpm`` acquisitions succeed in any ``window_s`` (60 s; smaller in tests). ``rpm <= 0``
    means unlimited. Pass a sync ``redis.Redis`` (called from a thread; works from any event
    loop) or a ``redis.asyncio.Redis`` (bound to the loop it was first used in).
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        rpm: int,
        *,
        window_s: float = 60.0,
        name: str = "default",
    ) -> None:
        self.client = client
        self.rpm = int(rpm)
        self.window_s = float(window_s)
        self.key = keys.gemini_rpm(name)
        self._async_script: AsyncScript | None = None
        self._sync_script: Script | None = None
        if isinstance(client, redis.asyncio.Redis):
            self._async_script = client.register_script(_SLIDING_WINDOW_LUA)
        else:
            self._sync_script = client.register_script(_SLIDING_WINDOW_LUA)

    async def _try(self) -> float:
        """Take a slot if one is free (0.0), else the seconds until the oldest one frees."""
        args: list[str | int] = [self.rpm, int(self.window_s * 1_000_000), uuid.uuid4().hex]
        if self._async_script is not None:
            wait_us = await self._async_script(keys=[self.key], args=args)
        else:
            assert self._sync_script is not None
            wait_us = await asyncio.to_thread(self._sync_script, [self.key], args)
        return int(wait_us) / 1_000_000

    async def acquire(self) -> None:
        if self.rpm <= 0:
            return
        while True:
            wait = await self._try()
            if wait <= 0:
                return
            # a little jitter so a crowd of waiters does not retry in lockstep
            await asyncio.sleep(wait + random.uniform(0, min(0.05, self.window_s / 100)))


# ── Gemini's Batch API ──────────────────────────────────────────────────────────────────────
#
# Facts (google-genai 3.6.1): `client.batches.create(model, src=[InlinedRequest...] | "files/…")`
# posts `models/{model}:batchGenerateContent`; `get` and `cancel` speak `batches/{id}`. The
# Gemini API answers with an operation whose metadata holds the batch; the SDK maps its
# `BATCH_STATE_*` to `JOB_STATE_*`. Finished inline batches carry `dest.inlined_responses`
# (each a `response` or an `error`, with the request's `metadata`); file batches carry
# `dest.file_name`, a JSON Lines file of `{"key", "response" | "error"}` read through
# `files.download`. The Batch and Files APIs live under v1beta (the SDK defaults to v1), so
# this client asks for v1beta. Inline requests are limited to 20 MB in all.

BATCH_DONE_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)
BATCH_API_VERSION = "v1beta"


@dataclass
class BatchRequest:
    """One generation inside a batch; `key` maps its answer back to the job's item."""

    key: str
    prompt: str
    references: list[tuple[bytes, str]]
    aspect_ratio: str | None = None
    image_size: str | None = None

    def approximate_bytes(self) -> int:
        # base64 grows bytes by 4/3; a little for the JSON around each part
        return len(self.prompt.encode()) + sum(len(d) * 4 // 3 + 64 for d, _ in self.references)

    def file_line(self) -> str:
        """The request as a line of a batch input file (the REST shape, camelCase)."""
        parts: list[dict[str, Any]] = [{"text": self.prompt}]
        parts += [
            {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}
            for data, mime in self.references
        ]
        config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        image_config = {
            k: v
            for k, v in (("aspectRatio", self.aspect_ratio), ("imageSize", self.image_size))
            if v
        }
        if image_config:
            config["imageConfig"] = image_config
        request = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
        return json.dumps({"key": self.key, "request": request})


BatchOutcome = GenerationOutput | GenerationError


class GeminiBatches:
    """Creates, follows, cancels and reads Gemini batches (sync calls, with retries)."""

    def __init__(
        self,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 120,
        inline_limit_bytes: int = 19 * 1024 * 1024,
        max_attempts: int = 5,
        retry_budget_s: float = 180,
    ) -> None:
        self.model = model
        self.inline_limit_bytes = inline_limit_bytes
        self.max_attempts = max(1, max_attempts)
        self.retry_budget_s = retry_budget_s
        key = (api_key or "").strip() or None
        self.client: genai.Client | None = None
        if key is not None:
            self.client = genai.Client(
                api_key=key,
                http_options=types.HttpOptions(
                    base_url=base_url or None,
                    api_version=BATCH_API_VERSION,
                    timeout=max(1, int(timeout_s * 1000)),
                    retry_options=types.HttpRetryOptions(attempts=1),
                ),
            )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _call(self, what: str, call: Callable[[genai.Client], T]) -> T:
        if self.client is None:
            raise GenerationError(
                ErrorCode.generator_not_configured, "no Gemini API key is configured"
            )
        client = self.client
        retrying = tenacity.Retrying(
            stop=(
                tenacity.stop_after_attempt(self.max_attempts)
                | tenacity.stop_before_delay(self.retry_budget_s)
            ),
            wait=_WaitRetryAfter(tenacity.wait_exponential_jitter(initial=1, max=30)),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(call, client)
        except genai_errors.APIError as exc:
            raise GenerationError(
                ErrorCode.upstream_error,
                f"{what}: {exc.message or exc}",
                status=exc.code,
                reason=exc.status,
            ) from exc
        except _TIMEOUT_ERRORS + _TRANSIENT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.upstream_error, f"{what}: {exc or type(exc).__name__}"
            ) from exc

    def create(self, requests: list[BatchRequest], display_name: str) -> tuple[str, bool]:
        """Sends the requests as one batch; returns its name and whether it went as a file."""
        config = types.CreateBatchJobConfig(display_name=display_name)
        size = sum(r.approximate_bytes() for r in requests)
        if size <= self.inline_limit_bytes:
            inlined = [
                types.InlinedRequest(
                    model=self.model,
                    contents=request_contents(r.prompt, r.references),  # type: ignore[arg-type]
                    config=request_config(r.aspect_ratio, r.image_size),
                    metadata={"key": r.key},
                )
                for r in requests
            ]
            job = self._call(
                "creating the batch",
                lambda c: c.batches.create(model=self.model, src=inlined, config=config),
            )
            return str(job.name), False
        lines = "\n".join(r.file_line() for r in requests).encode() + b"\n"
        uploaded = self._call(
            "uploading the batch's input file",
            lambda c: c.files.upload(
                file=io.BytesIO(lines),
                config=types.UploadFileConfig(
                    mime_type="application/jsonl", display_name=f"{display_name}.jsonl"
                ),
            ),
        )
        job = self._call(
            "creating the batch",
            lambda c: c.batches.create(model=self.model, src=str(uploaded.name), config=config),
        )
        return str(job.name), True

    def state(self, name: str) -> str:
        job = self._call("reading the batch", lambda c: c.batches.get(name=name))
        return _enum_str(job.state) or "JOB_STATE_UNSPECIFIED"

    def cancel(self, name: str) -> None:
        self._call("cancelling the batch", lambda c: c.batches.cancel(name=name))

    def results(self, name: str, keys: list[str]) -> tuple[str, dict[str, BatchOutcome]]:
        """The batch's state and each answered request's outcome by key (answers without a
        key are matched to `keys` by position, the order the requests were sent in)."""
        job = self._call("reading the batch", lambda c: c.batches.get(name=name))
        state = _enum_str(job.state) or "JOB_STATE_UNSPECIFIED"
        outcomes: dict[str, BatchOutcome] = {}
        dest = job.dest
        if dest is None:
            return state, outcomes
        if dest.inlined_responses:
            for position, answer in enumerate(dest.inlined_responses):
                key = (answer.metadata or {}).get("key")
                if key is None and position < len(keys):
                    key = keys[position]
                if key is not None:
                    outcomes[key] = self._outcome(answer.response, answer.error)
        elif dest.file_name:
            file_name = dest.file_name
            data = self._call(
                "downloading the batch's results", lambda c: c.files.download(file=file_name)
            )
            for position, line in enumerate(data.decode().splitlines()):
                if not line.strip():
                    continue
                row = json.loads(line)
                key = row.get("key") or (keys[position] if position < len(keys) else None)
                response = row.get("response")
                parsed = (
                    types.GenerateContentResponse._from_response(response=response, kwargs={})
                    if response is not None
                    else None
                )
                error = (
                    types.JobError._from_response(response=row["error"], kwargs={})
                    if row.get("error")
                    else None
                )
                if key is not None:
                    outcomes[str(key)] = self._outcome(parsed, error)
        return state, outcomes

    def _outcome(
        self, response: types.GenerateContentResponse | None, error: types.JobError | None
    ) -> BatchOutcome:
        if error is not None or response is None:
            message = (error.message if error else None) or "the batch gave no answer"
            code = error.code if error else None
            return GenerationError(ErrorCode.upstream_error, message, status=code)
        try:
            return parse_response(response, self.model)
        except GenerationError as exc:
            return exc
