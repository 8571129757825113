"""What goes into one generateContent call and what comes out: the request's contents and
config, and the answer read as images and text, or as a ``GenerationError``.

Request layout: one user turn in which each reference image comes after a short caption of
the service's that numbers it and says its role and label ("Image 1 is the base image to
edit", "Image 2 shows the subject to keep: the player"), base and subject images first; then
the user's prompt, unchanged, as the last part (``layout``; docs/generation.md quotes the
wording). A generation without references is the prompt alone.

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


@dataclass
class ReferenceImage:
    """One image sent with a prompt: its bytes, its role (shared/contract/references.py) and
    the label the caption names it by. `reformat`: the first format's output, sent as the
    base of another format of the same scene."""

    data: bytes
    mime_type: str
    role: str = "item"
    label: str | None = None
    reformat: bool = False


_CAPTIONS = {
    "base": "Image {n}{label} is the base image to edit: change only what the instruction "
    "below asks and keep everything else as it is.",
    "subject": "Image {n} shows the subject to keep{label}: keep their identity, face, shape "
    "and details exactly as they are.",
    "style": "Image {n} is a style reference{label}: follow its look (colours, light, "
    "materials, composition), not its content.",
    "item": "Image {n} shows an item to include{label}.",
}
_REFORMAT = (
    "Image {n} is this same scene, made before in another format: make it again in the "
    "format asked for, keeping everything in it (people, products, colours, light) the same."
)


def caption(number: int, image: ReferenceImage) -> str:
    """The service's words before image `number` (from 1)."""
    if image.reformat:
        return _REFORMAT.format(n=number)
    label = f" ({image.label})" if image.label else ""
    return _CAPTIONS.get(image.role, _CAPTIONS["item"]).format(n=number, label=label)


def layout(
    prompt: str, references: list[ReferenceImage], notes: tuple[str, ...] = ()
) -> list[str | ReferenceImage]:
    """The parts of one request, in order: each image after its caption, then the service's
    notes (a brand kit's style, what the last attempt missed), the prompt last."""
    parts: list[str | ReferenceImage] = []
    for number, image in enumerate(references, start=1):
        parts += [caption(number, image), image]
    return [*parts, *notes, prompt]


def request_contents(
    prompt: str, references: list[ReferenceImage], notes: tuple[str, ...] = ()
) -> list[types.Content]:
    parts = [
        types.Part.from_text(text=part)
        if isinstance(part, str)
        else types.Part.from_bytes(data=part.data, mime_type=part.mime_type)
        for part in layout(prompt, references, notes)
    ]
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
