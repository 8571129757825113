"""What every command reaches through the typer context (`ctx.obj`): the global options, the
two consoles and the factory of the API client, as one `CliContext`; plus the exit codes and
the one way a command ends with an error.

`cli/app.py` creates the `CliContext` in its callback. Tests hand in their own (consoles of a
fixed width, a client on an in-process transport) with `CliRunner().invoke(app, args,
obj=CliContext(...))`; the options on the command line are filled into it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from cli.client import ApiError, AssetragClient
from shared.errors import describe_invalid

M = TypeVar("M", bound=BaseModel)

EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

ClientFactory = Callable[[str, str | None], AssetragClient]


def connect(api_url: str, api_key: str | None) -> AssetragClient:
    """The API client the commands use unless a test hands in another factory."""
    return AssetragClient(api_url, api_key=api_key)


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


@dataclass
class CliContext:
    """The global options (`--api-url`, `--api-key`), where output goes, and how the API
    client is made."""

    api_url: str | None = None
    api_key: str | None = None
    console: Console = field(default_factory=_stdout)
    err: Console = field(default_factory=_stderr)
    make_client: ClientFactory = connect

    def resolved_api_url(self) -> str:
        """`--api-url`, else ASSETRAG_API_URL (read only when a command needs it)."""
        if self.api_url:
            return self.api_url
        from shared.settings import get_settings

        return get_settings().api_url

    def client(self) -> AssetragClient:
        return self.make_client(self.resolved_api_url(), self.api_key)

    def fail(self, message: str, code: int = EXIT_ERROR) -> NoReturn:
        self.err.print(f"[red]{escape(message)}[/red]")
        raise typer.Exit(code)

    @contextlib.contextmanager
    def api_errors(self) -> Iterator[None]:
        """An API error, an unreachable API or a broken connection ends the command with
        exit code 2 and one line saying which."""
        try:
            yield
        except ApiError as exc:
            self.fail(f"error {exc.code}: {exc.message}")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.fail(
                f"error unreachable: cannot reach the assetrag API at "
                f"{self.resolved_api_url()} ({exc}).\n"
                "Start the stack with `assetrag up` (or set ASSETRAG_API_URL / --api-url)."
            )
        except httpx.TransportError as exc:
            self.fail(f"error network: {type(exc).__name__}: {exc}")


def cli_of(ctx: typer.Context) -> CliContext:
    """The `CliContext` the app's callback put on the context."""
    found = ctx.find_object(CliContext)
    if found is None:
        raise TypeError("no CliContext on the typer context: invoke the commands through cli.app")
    return found


def validated(cli: CliContext, build: Callable[[], M]) -> M:
    """A request model built from command-line values; a refusal is a usage error."""
    try:
        return build()
    except ValidationError as exc:
        cli.fail(f"error usage: {describe_invalid(exc.errors())}")
