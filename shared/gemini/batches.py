"""``GeminiBatches``: Gemini's Batch API (create, follow, cancel, read the answers), sync calls
with the same retries as interactive generation.

Facts (google-genai 3.6.1): ``client.batches.create(model, src=[InlinedRequest...] |
"files/…")`` posts ``models/{model}:batchGenerateContent``; ``get`` and ``cancel`` speak
``batches/{id}``. The Gemini API answers with an operation whose metadata holds the batch; the
SDK maps its ``BATCH_STATE_*`` to ``JOB_STATE_*``. Finished inline batches carry
``dest.inlined_responses`` (each a ``response`` or an ``error``, with the request's
``metadata``); file batches carry ``dest.file_name``, a JSON Lines file of ``{"key",
"response" | "error"}`` read through ``files.download``. The Batch and Files APIs live under
v1beta (the SDK defaults to v1), so this client asks for v1beta. Inline requests are limited
to 20 MB in all.

Cleaning up: ``files.delete(name=)`` deletes an uploaded input file (Gemini answers 403 or 404
for one already gone). A results file (``files/batch-{batch id}``) cannot be deleted: Gemini's
DeleteFileRequest refuses file ids over 40 characters, and a batch id alone is 36
(googleapis/python-genai#1759, open); the Files API drops every file after 48 hours anyway.
``batches.list`` takes no filter on the Gemini API (google-genai raises for ``filter`` outside
Vertex), so finding a batch by its display name reads every page, as does ``files.list``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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
    enum_str,
    layout,
    parse_response,
    request_config,
    request_contents,
)
from shared.gemini.retries import TIMEOUT_ERRORS, TRANSIENT_ERRORS, retry_policy

if TYPE_CHECKING:
    from shared.settings import Settings

T = TypeVar("T")

BATCH_DONE_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)
BATCH_API_VERSION = "v1beta"
DEFAULT_INLINE_LIMIT_BYTES = 19 * 1024 * 1024
GONE_FILE_STATUSES = frozenset({403, 404})  # Gemini's answer to a file that is not there
LIST_PAGE_SIZE = 100


@dataclass
class BatchRequest:
    """One generation inside a batch; `key` maps its answer back to the job's item."""

    key: str
    prompt: str
    references: list[ReferenceImage]
    aspect_ratio: str | None = None
    image_size: str | None = None

    def approximate_bytes(self) -> int:
        # base64 grows bytes by 4/3; a little for the JSON around each part
        return len(self.prompt.encode()) + sum(
            len(r.data) * 4 // 3 + 64 + 300 for r in self.references
        )

    def file_line(self) -> str:
        """The request as a line of a batch input file (the REST shape, camelCase)."""
        parts: list[dict[str, Any]] = [
            {"text": part}
            if isinstance(part, str)
            else {
                "inlineData": {
                    "mimeType": part.mime_type,
                    "data": base64.b64encode(part.data).decode(),
                }
            }
            for part in layout(self.prompt, self.references)
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


def input_file_name(display_name: str) -> str:
    """The display name of a batch's input file, by which one left behind is found again."""
    return f"{display_name}.jsonl"


class GeminiBatches:
    """Creates, follows, cancels and reads Gemini batches (sync calls, with retries)."""

    def __init__(
        self, config: GeminiConfig, inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    ) -> None:
        self.config = config
        self.inline_limit_bytes = inline_limit_bytes
        self.client: genai.Client | None = config.client(api_version=BATCH_API_VERSION)

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiBatches:
        return cls(GeminiConfig.from_settings(settings), settings.gemini_batch_inline_bytes)

    @property
    def model(self) -> str:
        return self.config.model

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _call(self, what: str, call: Callable[[genai.Client], T]) -> T:
        if self.client is None:
            raise GenerationError(
                ErrorCode.generator_not_configured, "no Gemini API key is configured"
            )
        try:
            return tenacity.Retrying(**retry_policy(self.config))(call, self.client)
        except genai_errors.APIError as exc:
            raise GenerationError(
                ErrorCode.upstream_error,
                f"{what}: {exc.message or exc}",
                status=exc.code,
                reason=exc.status,
            ) from exc
        except TIMEOUT_ERRORS + TRANSIENT_ERRORS as exc:
            raise GenerationError(
                ErrorCode.upstream_error, f"{what}: {exc or type(exc).__name__}"
            ) from exc

    def goes_as_file(self, requests: list[BatchRequest]) -> bool:
        return sum(r.approximate_bytes() for r in requests) > self.inline_limit_bytes

    def upload(self, requests: list[BatchRequest], display_name: str) -> str | None:
        """Uploads the requests as a batch's JSON Lines input file, named
        ``{display_name}.jsonl``, when they are over the inline limit; returns the file's name
        (None: they go inline)."""
        if not self.goes_as_file(requests):
            return None
        lines = "\n".join(r.file_line() for r in requests).encode() + b"\n"
        uploaded = self._call(
            "uploading the batch's input file",
            lambda c: c.files.upload(
                file=io.BytesIO(lines),
                config=types.UploadFileConfig(
                    mime_type="application/jsonl", display_name=input_file_name(display_name)
                ),
            ),
        )
        return str(uploaded.name)

    def create(
        self, requests: list[BatchRequest], display_name: str, input_file: str | None = None
    ) -> tuple[str, bool]:
        """Sends the requests as one batch (from `input_file` when given, else inline, or
        through an input file uploaded here above the inline limit); returns its name and
        whether it went as a file."""
        config = types.CreateBatchJobConfig(display_name=display_name)
        source = input_file or self.upload(requests, display_name)
        if source is None:
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
        job = self._call(
            "creating the batch",
            lambda c: c.batches.create(model=self.model, src=source, config=config),
        )
        return str(job.name), True

    def find(self, display_name: str) -> list[tuple[str, str]]:
        """The batches upstream of this display name, as (name, state)."""
        return self._call(
            "listing the batches",
            lambda c: [
                (str(job.name), enum_str(job.state) or "JOB_STATE_UNSPECIFIED")
                for job in c.batches.list(config={"page_size": LIST_PAGE_SIZE})
                if job.display_name == display_name
            ],
        )

    def input_files(self, display_name: str) -> list[str]:
        """The uploaded input files of the batch of this display name (any left behind)."""
        wanted = input_file_name(display_name)
        return self._call(
            "listing the files",
            lambda c: [
                str(file.name)
                for file in c.files.list(config={"page_size": LIST_PAGE_SIZE})
                if file.display_name == wanted
            ],
        )

    def delete_file(self, name: str) -> None:
        """Deletes an uploaded file; one already gone is fine."""
        try:
            self._call("deleting the file", lambda c: c.files.delete(name=name))
        except GenerationError as exc:
            if exc.status not in GONE_FILE_STATUSES:
                raise

    def state(self, name: str) -> str:
        job = self._call("reading the batch", lambda c: c.batches.get(name=name))
        return enum_str(job.state) or "JOB_STATE_UNSPECIFIED"

    def cancel(self, name: str) -> None:
        self._call("cancelling the batch", lambda c: c.batches.cancel(name=name))

    def results(self, name: str, keys: list[str]) -> tuple[str, dict[str, BatchOutcome]]:
        """The batch's state and each answered request's outcome by key (answers without a
        key are matched to `keys` by position, the order the requests were sent in)."""
        job = self._call("reading the batch", lambda c: c.batches.get(name=name))
        state = enum_str(job.state) or "JOB_STATE_UNSPECIFIED"
        dest = job.dest
        if dest is None:
            return state, {}
        if dest.inlined_responses:
            return state, self._inline_outcomes(dest.inlined_responses, keys)
        if dest.file_name:
            return state, self._file_outcomes(dest.file_name, keys)
        return state, {}

    def _inline_outcomes(
        self, answers: list[types.InlinedResponse], keys: list[str]
    ) -> dict[str, BatchOutcome]:
        outcomes: dict[str, BatchOutcome] = {}
        for position, answer in enumerate(answers):
            key = (answer.metadata or {}).get("key")
            if key is None and position < len(keys):
                key = keys[position]
            if key is not None:
                outcomes[key] = self._outcome(answer.response, answer.error)
        return outcomes

    def _file_outcomes(self, file_name: str, keys: list[str]) -> dict[str, BatchOutcome]:
        data = self._call(
            "downloading the batch's results", lambda c: c.files.download(file=file_name)
        )
        outcomes: dict[str, BatchOutcome] = {}
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
        return outcomes

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
