"""One coded error base: every expected failure carries a stable `code` and a `message`.

The API maps codes to HTTP statuses in one table (`api/errors.py`); a job or an item that
fails records the same code and message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.contract import ErrorCode, ErrorInfo, ItemError


class CodedError(Exception):
    def __init__(
        self, code: ErrorCode | str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.headers = headers

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, whatever a subclass's signature
        return (_rebuild, (type(self), self.__dict__))

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message)

    def item_error(self, index: int, source: str) -> ItemError:
        return ItemError(index=index, source=source, code=self.code, message=self.message)


def _rebuild(cls: type[CodedError], state: dict[str, Any]) -> CodedError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class InputRejected(CodedError):
    """Bytes, a path or a URL that cannot become an asset: the item's (or request's) fault."""


class NotFound(CodedError):
    """A collection, asset, upload or job that does not exist (for this tenant)."""


class Conflict(CodedError):
    """The request does not fit what exists (another model, a finished job, a taken name)."""


class Unavailable(CodedError):
    """A part of the service that cannot answer now; worth retrying later."""


def describe_invalid(errors: Iterable[Any]) -> str:
    """Pydantic's validation errors in a line people can read: field path and message,
    without the union-branch noise of optional fields."""
    parts: list[str] = []
    for error in errors:
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if loc and loc[-1] == "none":
            continue  # the null branch of an optional field: never the interesting one
        # union branch tags ("constrained-str", "list[...]") are not field names
        loc = [p for p in loc if not (isinstance(p, str) and ("-" in p or "[" in p))]
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        text = f"{'.'.join(map(str, loc))}: {message}" if loc else message
        if text not in parts:
            parts.append(text)
    return "; ".join(parts[:10])
