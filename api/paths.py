"""Route paths as the routers declare them: each is a contract path (shared/contract/paths.py
spells every path once, in full, for the API, the CLI and the web UI alike) built with the
placeholders below and made relative to the prefix its router carries."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter

# The path parameters, as the contract's path builders receive them to make a route template.
JOB_ID = "{job_id}"
NAME = "{name}"
ASSET_ID = "{asset_id}"


def relative(router: APIRouter, path: str) -> str:
    """`path` below `router`'s prefix. A URL's query (a thumbnail's `?size=`) is a parameter,
    not part of the route."""
    route = urlsplit(path).path
    if not route.startswith(router.prefix):
        raise ValueError(f"{route} is not under {router.prefix}")
    return route.removeprefix(router.prefix)
