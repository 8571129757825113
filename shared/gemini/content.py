"""What goes into one generateContent call and what comes out: the request's contents and
config, and the answer read as images and text, or as a ``GenerationError``.

Request layout: one user turn whose parts are the prompt text FIRST, then the reference images
as inline parts in the order given (the layout of Google's image-editing examples,
``contents=[prompt, image1, image2]``).

Gemini 3 image models think before they answer: parts marked ``thought`` are drafts, not
results. A block comes as ``promptFeedback.blockReason`` or as a candidate's finish reason
with no image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.genai import types

from shared.contract import ErrorCode
from shared.errors import CodedError

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


def enum_str(value: Any) -> str | None:
    """An SDK enum (or the plain string an older SDK gives) as its string value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


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
        reason = enum_str(feedback.block_reason)
        raise GenerationError(
            ErrorCode.blocked,
            feedback.block_reason_message or f"the prompt was blocked ({reason})",
            reason=reason,
        )
    images: list[ImageBytes] = []
    texts: list[str] = []
    finish: list[tuple[str, str | None]] = []
    for candidate in response.candidates or []:
        reason = enum_str(candidate.finish_reason)
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
