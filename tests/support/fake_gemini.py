"""A local HTTP server that speaks enough of Gemini's REST protocol for the real google-genai SDK.

Point the SDK (or the whole stack, through ``ASSETRAG_GEMINI_BASE_URL``) at ``server.base_url``.
It answers ``POST /{version}/models/{model}:generateContent`` the way a Gemini 3 image model
does: thought parts first (a draft text and a draft image, both ``"thought": true``), then the
final image(s) and a short text, with ``finishReason``, ``usageMetadata`` and ``modelVersion``.

Behaviour is steered by magic words anywhere in the prompt text (so separate worker processes
can steer it without sharing memory), or by behaviours queued through ``POST /_control``:

==========================  ============================================================
``[block:prompt]``          ``promptFeedback.blockReason=SAFETY``, no candidates
``[block:prompt:REASON]``   the same with another block reason
``[block:image]``           a candidate with ``finishReason=IMAGE_SAFETY`` and no image
``[finish:REASON]``         a candidate with that ``finishReason``, text only, no image
``[text-only]``             a normal ``STOP`` answer with text and no image
``[fail:500]``              always answer 500 INTERNAL (any 4xx/5xx code works)
``[fail:429x2]``            429 RESOURCE_EXHAUSTED the first 2 times for this prompt, then OK
``[retry-after:0.5]``       failures carry a ``Retry-After: 0.5`` header
``[retry-info:0.5]``        failures carry a ``google.rpc.RetryInfo`` detail, ``retryDelay: 0.5s``
                            (how Google itself states the delay on a 429)
``[slow:2]``                sleep 2 s before answering (floats allowed)
``[images:N]``              N final images instead of one
``[no-thought]``            leave the thought parts out
==========================  ============================================================

Counts for ``xN`` are kept per (prompt, code) until ``reset()`` / ``POST /_reset``.

The Batch API, as google-genai speaks it (v1beta): ``POST models/{model}:batchGenerateContent``
with inline requests or an input file's name (uploaded through the Files API's resumable
protocol: ``POST upload/{version}/files``, then the upload URL it gives), ``GET
batches/{id}``, ``POST batches/{id}:cancel``, and results inline or as a file read through
``GET files/{id}:download?alt=media``; ``GET batches`` and ``GET files`` list them (paged, no
filter, as Gemini's API does), ``DELETE files/{id}`` deletes a file. A batch is
``BATCH_STATE_PENDING``, then ``RUNNING`` after ``batch_running_after_s``, then ``SUCCEEDED``
after ``batch_done_after_s``; each request inside it is answered as ``generateContent`` would
(so magic words give per-request errors and safety blocks); a request with ``[batch:hold]``
keeps its batch running until cancelled.
``batch_requests``, ``batch_cancels``, ``uploaded_files`` and ``deleted_files`` record what came;
``live_files()`` lists the files not deleted. As at Google, a results file is named
``files/batch-{batch id}`` (batch ids are 36 characters), and deleting it is refused with 400
INVALID_ARGUMENT because its id is over 40 characters (googleapis/python-genai#1759); deleting
a file that is not there answers 403 PERMISSION_DENIED, as Google does.
Control endpoints: ``POST /_control`` with ``{"queue": ["fail:503", "slow:1", ...]}`` makes the
next requests (one entry each, in order) behave as if those magic words were in their prompt;
``GET /_requests`` returns the recorded requests as JSON; ``POST /_reset`` clears everything.

Images: a real PNG made with Pillow; size follows the aspect ratio (``k = 64 // min(w, h)``,
so 1:1 is 64x64, 16:9 is 112x63, 2:3 is 64x96), times 2 for ``2K`` and 4 for ``4K``; its colour
comes from a hash of the prompt and a per-prompt counter, so variants of one prompt differ.

Run standalone: ``python -m tests.support.fake_gemini --port 8765`` and set
``ASSETRAG_GEMINI_BASE_URL=http://127.0.0.1:8765`` and any ``ASSETRAG_GEMINI_API_KEY``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw

_PATH_RE = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")
_BATCH_CREATE_RE = re.compile(
    r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):batchGenerateContent$"
)
_BATCH_RE = re.compile(r"^/(?P<version>[^/]+)/batches/(?P<id>[^/:]+)(?P<cancel>:cancel)?$")
_UPLOAD_START_RE = re.compile(r"^/upload/(?P<version>[^/]+)/files$")
_UPLOAD_RE = re.compile(r"^/_upload/(?P<id>[A-Za-z0-9]+)$")
_DOWNLOAD_RE = re.compile(r"^/(?P<version>[^/]+)/files/(?P<id>[^/:]+):download$")
_FILE_RE = re.compile(r"^/(?P<version>[^/]+)/files/(?P<id>[^/:]+)$")
_LIST_RE = re.compile(r"^/(?P<version>[^/]+)/(?P<what>batches|files)$")
_FILE_ID_LIMIT = 40  # Google refuses longer file ids in DeleteFileRequest
_MAGIC_RE = re.compile(r"\[(?P<word>[a-z-]+)(?::(?P<arg>[^\]]*))?\]")

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_STATUS_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


@dataclass
class RecordedRequest:
    path: str
    version: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    prompt: str
    reference_count: int
    reference_mime_types: list[str]
    reference_sha256: list[str]
    part_kinds: list[str]  # "text" / "image", in the order the request carried them
    # every part in order: "text:<the text>" or "image:<sha256 of its bytes>"
    parts: list[str]
    image_config: dict[str, Any]
    response_modalities: list[str]
    status: int = 200
    batch: str | None = None  # the batch that carried it, if one did
    final_image_sha256: list[str] = field(default_factory=list)
    thought_image_sha256: list[str] = field(default_factory=list)
    received_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Behaviour:
    block_prompt: str | None = None
    finish: str | None = None
    text_only: bool = False
    fail_code: int | None = None
    fail_times: int | None = None  # None: always
    retry_after: str | None = None
    retry_info: str | None = None
    slow_s: float = 0.0
    images: int = 1
    thoughts: bool = True


def _parse_behaviour(text: str) -> _Behaviour:
    behaviour = _Behaviour()
    for match in _MAGIC_RE.finditer(text):
        word, arg = match.group("word"), match.group("arg")
        if word == "block" and arg:
            kind, _, reason = arg.partition(":")
            if kind == "prompt":
                behaviour.block_prompt = reason or "SAFETY"
            elif kind == "image":
                behaviour.finish = reason or "IMAGE_SAFETY"
        elif word == "finish" and arg:
            behaviour.finish = arg.upper()
        elif word == "text-only":
            behaviour.text_only = True
        elif word == "fail" and arg:
            code, _, times = arg.partition("x")
            behaviour.fail_code = int(code)
            behaviour.fail_times = int(times) if times else None
        elif word == "retry-after" and arg:
            behaviour.retry_after = arg
        elif word == "retry-info" and arg:
            behaviour.retry_info = arg
        elif word == "slow" and arg:
            behaviour.slow_s = float(arg)
        elif word == "images" and arg:
            behaviour.images = max(0, int(arg))
        elif word == "no-thought":
            behaviour.thoughts = False
    return behaviour


def image_size_for(aspect_ratio: str | None, image_size: str | None) -> tuple[int, int]:
    """The size of the PNG the fake answers with, for tests to assert on."""
    w, h = 1, 1
    if aspect_ratio and ":" in aspect_ratio:
        a, _, b = aspect_ratio.partition(":")
        try:
            w, h = max(1, int(a)), max(1, int(b))
        except ValueError:
            w, h = 1, 1
    k = max(1, 64 // min(w, h))
    scale = {"2K": 2, "4K": 4}.get((image_size or "").upper(), 1)
    return w * k * scale, h * k * scale


def _png(size: tuple[int, int], seed: str, *, draft: bool = False) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    if draft:
        color: tuple[int, int, int] = (128, 128, 128)
    else:
        color = (digest[0], digest[1], digest[2])
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    # A stripe in the complementary colour, placed by the hash, so images are not flat fills.
    x = digest[3] % max(1, size[0])
    draw.rectangle(
        [x, 0, min(size[0] - 1, x + max(1, size[0] // 8)), size[1] - 1],
        fill=tuple(255 - c for c in color),
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Both alphabets, padding optional: google-genai sends URL-safe base64."""
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGemini:
    """The fake server; ``with FakeGemini() as fake: fake.base_url`` or ``start()``/``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None):
        self._host = host
        self._port = port
        self.api_key = api_key  # when set, any other key is refused like Google does (400)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = defaultdict(int)
        self._variants: dict[str, int] = defaultdict(int)
        self._queue: deque[str] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # the Batch and Files APIs
        self.batch_running_after_s = 0.2
        self.batch_done_after_s = 1.0
        self.batches: dict[str, FakeBatch] = {}
        self.batch_cancels: list[str] = []
        self.files: dict[str, bytes] = {}
        self.file_records: dict[str, dict[str, Any]] = {}  # the File resource, by name
        self.uploaded_files: list[str] = []
        self.deleted_files: list[str] = []
        self._uploads: dict[str, dict[str, Any]] = {}

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeGemini:
        server = ThreadingHTTPServer((self._host, self._port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # steering ------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._counts.clear()
            self._variants.clear()
            self._queue.clear()
            self.batches.clear()
            self.batch_cancels.clear()
            self.files.clear()
            self.file_records.clear()
            self.uploaded_files.clear()
            self.deleted_files.clear()
            self._uploads.clear()

    def queue(self, *behaviours: str) -> None:
        """Make the next requests behave as if ``[behaviour]`` were in their prompt."""
        with self._lock:
            self._queue.extend(behaviours)

    def requests_for(self, needle: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if needle in r.prompt]

    # the protocol --------------------------------------------------------------------------
    def handle_generate(
        self,
        version: str,
        model: str,
        headers: dict[str, str],
        body: dict[str, Any],
        batch: str | None = None,
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        texts: list[str] = []
        kinds: list[str] = []
        ref_mimes: list[str] = []
        ref_shas: list[str] = []
        sequence: list[str] = []
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                if "text" in part:
                    texts.append(str(part["text"]))
                    kinds.append("text")
                    sequence.append(f"text:{part['text']}")
                elif "inlineData" in part or "inline_data" in part:
                    # Google's JSON parser takes camelCase and snake_case names alike, and
                    # google-genai 3.4.0 does send {"inlineData": {"mime_type": ...}}.
                    blob = part.get("inlineData") or part.get("inline_data") or {}
                    data = _b64decode(str(blob.get("data") or ""))
                    ref_mimes.append(str(blob.get("mimeType") or blob.get("mime_type")))
                    ref_shas.append(hashlib.sha256(data).hexdigest())
                    kinds.append("image")
                    sequence.append(f"image:{ref_shas[-1]}")
        # the service sends its captions first and the user's prompt as the last text
        prompt = texts[-1] if texts else ""
        gen_config = body.get("generationConfig") or {}
        image_config = dict(gen_config.get("imageConfig") or {})
        record = RecordedRequest(
            path=f"/{version}/models/{model}:generateContent",
            version=version,
            model=model,
            headers=headers,
            body=body,
            prompt=prompt,
            reference_count=len(ref_mimes),
            reference_mime_types=ref_mimes,
            reference_sha256=ref_shas,
            part_kinds=kinds,
            parts=sequence,
            image_config=image_config,
            response_modalities=list(gen_config.get("responseModalities") or []),
            received_at=time.time(),
            batch=batch,
        )
        with self._lock:
            self.requests.append(record)
            queued = self._queue.popleft() if self._queue else None
        steering = prompt + (f" [{queued}]" if queued else "")
        behaviour = _parse_behaviour(steering)

        if behaviour.slow_s > 0:
            time.sleep(behaviour.slow_s)

        key = headers.get("x-goog-api-key", "")
        if not key or (self.api_key is not None and key != self.api_key):
            record.status = 400
            return 400, {}, _error(400, "API key not valid. Please pass a valid API key.")

        if behaviour.fail_code is not None:
            with self._lock:
                count_key = (steering, behaviour.fail_code)
                self._counts[count_key] += 1
                failing = (
                    behaviour.fail_times is None or self._counts[count_key] <= behaviour.fail_times
                )
            if failing:
                code = behaviour.fail_code
                record.status = code
                extra: dict[str, str] = {}
                error = _error(code, _STATUS_MESSAGES.get(code, f"fake failure {code}"))
                if behaviour.retry_after is not None:
                    extra["Retry-After"] = behaviour.retry_after
                if behaviour.retry_info is not None:
                    error["error"]["details"] = [
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": f"{behaviour.retry_info}s",
                        }
                    ]
                return code, extra, error

        usage = {
            "promptTokenCount": 10 + 258 * record.reference_count,
            "candidatesTokenCount": 0,
            "totalTokenCount": 0,
            "thoughtsTokenCount": 0,
        }
        response: dict[str, Any] = {
            "modelVersion": model,
            "responseId": hashlib.sha256(f"{time.time_ns()}{prompt}".encode()).hexdigest()[:20],
            "usageMetadata": usage,
        }
        if behaviour.block_prompt:
            response["promptFeedback"] = {"blockReason": behaviour.block_prompt}
            usage["totalTokenCount"] = usage["promptTokenCount"]
            return 200, {}, response

        parts: list[dict[str, Any]] = []
        if behaviour.thoughts:
            draft = _png((16, 16), prompt, draft=True)
            record.thought_image_sha256.append(hashlib.sha256(draft).hexdigest())
            parts.append(
                {"text": "**Planning the image**\nLet me sketch a draft first.", "thought": True}
            )
            parts.append(
                {"inlineData": {"mimeType": "image/png", "data": _b64(draft)}, "thought": True}
            )
            usage["thoughtsTokenCount"] = 120

        finish = behaviour.finish or "STOP"
        if behaviour.finish or behaviour.text_only:
            parts.append({"text": "I can describe it, but I did not draw an image this time."})
        else:
            size = image_size_for(image_config.get("aspectRatio"), image_config.get("imageSize"))
            for _ in range(behaviour.images):
                with self._lock:
                    self._variants[prompt] += 1
                    variant = self._variants[prompt]
                png = _png(size, f"{prompt}#{variant}")
                record.final_image_sha256.append(hashlib.sha256(png).hexdigest())
                image_part: dict[str, Any] = {
                    "inlineData": {"mimeType": "image/png", "data": _b64(png)}
                }
                if not any("thoughtSignature" in p for p in parts):
                    image_part["thoughtSignature"] = _b64(b"fake-signature")
                parts.append(image_part)
            parts.append({"text": "Here is your image."})
            usage["candidatesTokenCount"] = 1290 * behaviour.images
        usage["totalTokenCount"] = sum(
            usage[k] for k in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
        )
        response["candidates"] = [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish,
                "index": 0,
            }
        ]
        return 200, {}, response

    # the Batch and Files APIs -------------------------------------------------------------
    def batch_requests(self, name: str) -> int:
        with self._lock:
            return len(self.batches[name].requests)

    def create_batch(
        self, version: str, model: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        batch = body.get("batch") or {}
        source = batch.get("inputConfig") or {}
        requests: list[tuple[str | None, dict[str, Any], dict[str, Any]]] = []
        if "fileName" in source:
            data = self.files.get(str(source["fileName"]))
            if data is None:
                return 404, _error(404, f"no file {source['fileName']}")
            for line in data.decode().splitlines():
                if line.strip():
                    row = json.loads(line)
                    requests.append((row.get("key"), {}, row["request"]))
        else:
            for entry in (source.get("requests") or {}).get("requests") or []:
                requests.append((None, entry.get("metadata") or {}, entry["request"]))
        if not requests:
            return 400, _error(400, "a batch needs requests")
        name = f"batches/{secrets.token_hex(18)}"  # 36 characters, as Google's are
        fake = FakeBatch(
            name=name,
            model=model,
            display_name=str(batch.get("displayName") or ""),
            from_file="fileName" in source,
            requests=requests,
            headers=headers,
            version=version,
            created=time.time(),
        )
        with self._lock:
            self.batches[name] = fake
        return 200, self._operation(fake)

    def get_batch(self, batch_id: str, cancel: bool) -> tuple[int, dict[str, Any]]:
        name = f"batches/{batch_id}"
        with self._lock:
            fake = self.batches.get(name)
        if fake is None:
            return 404, _error(404, f"Batch {name} not found.")
        if cancel:
            with self._lock:
                self.batch_cancels.append(name)
                state = fake.state(self.batch_running_after_s, self.batch_done_after_s)
                if state not in ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"):
                    fake.cancelled_at = time.time()
            return 200, {}
        return 200, self._operation(fake)

    def _operation(self, fake: FakeBatch, with_output: bool = True) -> dict[str, Any]:
        state = fake.state(self.batch_running_after_s, self.batch_done_after_s)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fake.created))
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{fake.model}",
            "displayName": fake.display_name,
            "name": fake.name,
            "state": state,
            "createTime": stamp,
            "updateTime": stamp,
            "batchStats": {"requestCount": str(len(fake.requests))},
        }
        if with_output and (
            state == "BATCH_STATE_SUCCEEDED"
            or (state == "BATCH_STATE_CANCELLED" and fake.output is not None)
        ):
            metadata["output"] = self._output(fake)
        return {"name": fake.name, "metadata": metadata, "done": state in _DONE_BATCH_STATES}

    def _output(self, fake: FakeBatch) -> dict[str, Any]:
        """Answers every request once (the first time the batch is read as done)."""
        with self._lock:
            if fake.output is not None:
                return fake.output
        answers = []
        for key, metadata, request in fake.requests:
            code, _, payload = self.handle_generate(
                fake.version, fake.model, fake.headers, request, batch=fake.name
            )
            answer: dict[str, Any] = {"response": payload} if code == 200 else dict(payload)
            if fake.from_file:
                answer["key"] = key
            else:
                answer["metadata"] = metadata
            answers.append(answer)
        if fake.from_file:
            name = f"files/batch-{fake.name.removeprefix('batches/')}"
            data = "".join(json.dumps(a) + "\n" for a in answers).encode()
            self._keep_file(name, data, f"{fake.display_name} results", "GENERATED")
            output: dict[str, Any] = {"responsesFile": name}
        else:
            output = {"inlinedResponses": {"inlinedResponses": answers}}
        with self._lock:
            fake.output = output
        return output

    def start_upload(self, body: dict[str, Any]) -> str:
        upload_id = secrets.token_hex(8)
        with self._lock:
            self._uploads[upload_id] = dict(body.get("file") or {})
        return upload_id

    def finish_upload(self, upload_id: str, data: bytes) -> dict[str, Any] | None:
        with self._lock:
            meta = self._uploads.pop(upload_id, None)
            if meta is None:
                return None
            self.uploaded_files.append(f"files/{upload_id}")
        name = f"files/{upload_id}"
        # google-genai 3.6 sends the File with snake_case names, which Google's parser takes too
        display_name = meta.get("displayName") or meta.get("display_name")
        mime_type = meta.get("mimeType") or meta.get("mime_type")
        return self._keep_file(name, data, display_name, "UPLOADED", mime_type)

    def _keep_file(
        self,
        name: str,
        data: bytes,
        display_name: str | None,
        source: str,
        mime_type: str | None = None,
    ) -> dict[str, Any]:
        record = {
            "name": name,
            "displayName": display_name,
            "mimeType": mime_type or "application/octet-stream",
            "sizeBytes": str(len(data)),
            "state": "ACTIVE",
            "source": source,
        }
        with self._lock:
            self.files[name] = data
            self.file_records[name] = record
        return record

    def delete_file(self, file_id: str) -> tuple[int, dict[str, Any]]:
        name = f"files/{file_id}"
        if len(file_id) > _FILE_ID_LIMIT:
            message = (
                "* DeleteFileRequest.name: File ID (name excluding 'files/') cannot be more "
                f"than {_FILE_ID_LIMIT} characters.\n"
            )
            return 400, _error(400, message)
        with self._lock:
            if self.files.pop(name, None) is None:
                message = (
                    f"You do not have permission to access the File {file_id} or it may not exist."
                )
                return 403, _error(403, message)
            self.file_records.pop(name, None)
            self.deleted_files.append(name)
        return 200, {}

    def live_files(self, display_name: str | None = None) -> list[str]:
        """The files not deleted (those of one display name, if given)."""
        with self._lock:
            return [
                name
                for name, record in self.file_records.items()
                if display_name is None or record.get("displayName") == display_name
            ]

    def listing(self, what: str, query: str) -> tuple[int, dict[str, Any]]:
        """One page of ``GET batches`` or ``GET files`` (``pageSize``, ``pageToken``)."""
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        size = max(1, int(params.get("pageSize") or 10))
        start = int(params.get("pageToken") or 0)
        if what == "batches":
            with self._lock:
                batches = list(self.batches.values())
            rows = [self._operation(b, with_output=False) for b in batches]
            key = "operations"
        else:
            with self._lock:
                rows = [dict(r) for r in self.file_records.values()]
            key = "files"
        page: dict[str, Any] = {key: rows[start : start + size]} if rows else {}
        if start + size < len(rows):
            page["nextPageToken"] = str(start + size)
        return 200, page


_DONE_BATCH_STATES = frozenset(
    {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED"}
)


@dataclass
class FakeBatch:
    name: str
    model: str
    display_name: str
    from_file: bool
    requests: list[tuple[str | None, dict[str, Any], dict[str, Any]]]
    headers: dict[str, str]
    version: str
    created: float
    cancelled_at: float | None = None
    output: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return any("[batch:hold]" in json.dumps(r) for _, _, r in self.requests)

    def state(self, running_after_s: float = 0.2, done_after_s: float = 1.0) -> str:
        if self.cancelled_at is not None:
            return "BATCH_STATE_CANCELLED"
        age = time.time() - self.created
        if age >= done_after_s and not self.held:
            return "BATCH_STATE_SUCCEEDED"
        return "BATCH_STATE_RUNNING" if age >= running_after_s else "BATCH_STATE_PENDING"


def _error(code: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "status": _STATUS_NAMES.get(code, "UNKNOWN")}
    }


def _make_handler(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeGemini/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its timeout); nothing to tell it.
                self.close_connection = True

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else {}

        def _send_raw(self, code: int, data: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _authorised(self) -> bool:
            key = self.headers.get("x-goog-api-key", "")
            if not key or (fake.api_key is not None and key != fake.api_key):
                self._send(400, _error(400, "API key not valid. Please pass a valid API key."))
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/_requests":
                with fake._lock:
                    payload = [r.to_json() for r in fake.requests]
                self._send(200, payload)
            elif path in ("/", "/_health"):
                self._send(200, {"ok": True})
            elif match := _BATCH_RE.match(path):
                if self._authorised():
                    self._send(*fake.get_batch(match.group("id"), cancel=False))
            elif match := _LIST_RE.match(path):
                if self._authorised():
                    query = self.path.partition("?")[2]
                    self._send(*fake.listing(match.group("what"), query))
            elif match := _DOWNLOAD_RE.match(path):
                if not self._authorised():
                    return
                data = fake.files.get(f"files/{match.group('id')}")
                if data is None:
                    self._send(404, _error(404, f"no file {match.group('id')}"))
                else:
                    self._send_raw(200, data, {"Content-Type": "application/octet-stream"})
            else:
                self._send(404, _error(404, f"Method not found: {self.path}"))

        def do_DELETE(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            self._body()  # read any body, so the kept-alive connection stays in step
            if match := _FILE_RE.match(path):
                if self._authorised():
                    self._send(*fake.delete_file(match.group("id")))
            else:
                self._send(404, _error(404, f"Method not found: {self.path}"))

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if match := _UPLOAD_RE.match(path):
                file = fake.finish_upload(match.group("id"), raw)
                if file is None:
                    self._send(404, _error(404, "no such upload"))
                else:
                    self._send(200, {"file": file}, {"x-goog-upload-status": "final"})
                return
            try:
                body = json.loads(raw) if raw else {}
            except (ValueError, json.JSONDecodeError):
                self._send(400, _error(400, "Invalid JSON payload received."))
                return
            if path == "/_control":
                fake.queue(*[str(b).strip("[]") for b in body.get("queue", [])])
                self._send(200, {"queued": len(fake._queue)})
                return
            if path == "/_reset":
                fake.reset()
                self._send(200, {"ok": True})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            if _UPLOAD_START_RE.match(path):
                if self._authorised():
                    upload_id = fake.start_upload(body)
                    url = f"{fake.base_url}/_upload/{upload_id}"
                    self._send(
                        200, {}, {"x-goog-upload-url": url, "x-goog-upload-status": "active"}
                    )
                return
            if match := _BATCH_CREATE_RE.match(path):
                if self._authorised():
                    self._send(
                        *fake.create_batch(
                            match.group("version"), match.group("model"), headers, body
                        )
                    )
                return
            if match := _BATCH_RE.match(path):
                if self._authorised():
                    self._send(
                        *fake.get_batch(match.group("id"), cancel=bool(match.group("cancel")))
                    )
                return
            match = _PATH_RE.match(path)
            if not match:
                self._send(404, _error(404, f"Method not found: {path}"))
                return
            try:
                code, extra, payload = fake.handle_generate(
                    match.group("version"), match.group("model"), headers, body
                )
            except Exception as exc:  # a bug here must not look like a dropped connection
                self._send(500, _error(500, f"fake server error: {exc!r}"))
                return
            self._send(code, payload, extra)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for Gemini's REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="refuse any other key (default: any)")
    args = parser.parse_args(argv)
    fake = FakeGemini(args.host, args.port, api_key=args.api_key).start()
    print(f"fake Gemini listening on {fake.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
