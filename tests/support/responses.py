"""Reading the API's answers the way every route test does."""

from __future__ import annotations


def error_code(response: object) -> str:
    """The `error.code` of an error answer (`{"error": {"code", "message"}}`)."""
    return response.json()["error"]["code"]  # type: ignore[attr-defined]
