"""The tools: each a few lines over `ServiceClient`, answering MCP contents (JSON as text, and
images as image contents). A failure raises `ToolFailure` with the API's code and message,
which the server answers as a tool error (isError).

A tool that submits a job waits for it (`wait` seconds, progress notifications meanwhile); a
job that ends failed is a tool error carrying the job's own error code.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mcp.types import ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ValidationError

from api.mcp import schemas
from api.mcp.client import ServiceClient, ToolFailure
from api.mcp.following import Report, follow
from api.mcp.schemas import AssetArgs, JobArgs, JobWaiting, Schema, Waiting
from shared import contract
from shared.contract import ErrorCode, GenerateResult, Job, JobKind, JobState, SearchResult
from shared.errors import describe_invalid

Content = TextContent | ImageContent
M = TypeVar("M", bound=BaseModel)
# Images a generate call attaches; the rest are in the job's result, by URL.
MAX_IMAGES = 8
# How long search_assets waits for its (fast) search job.
SEARCH_WAIT_S = 60.0


@dataclass(frozen=True)
class Call:
    """One tool call: the client, the caller's own Authorization header, where its progress
    goes, and the API's address as the caller reaches it (for the links it is handed)."""

    client: ServiceClient
    authorization: str | None
    report: Report
    public_url: str

    def link(self, url: str) -> str:
        return url if urlsplit(url).netloc else f"{self.public_url.rstrip('/')}{url}"


def parsed(model: type[M], arguments: dict[str, Any]) -> M:
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        raise ToolFailure(ErrorCode.invalid_request, describe_invalid(exc.errors())) from exc


def text(value: Any) -> TextContent:
    return TextContent(type="text", text=json.dumps(value, indent=1))


def job_text(job: Job) -> TextContent:
    return text(job.model_dump(mode="json", exclude_none=True))


def ended(job: Job) -> Job:
    """The job, unless it failed: then a tool error with its code."""
    if job.state == JobState.failed and job.error is not None:
        raise ToolFailure(job.error.code, f"{job.error.message} (job {job.id})")
    return job


async def image(call: Call, url: str) -> ImageContent:
    data, mime_type = await call.client.image(url, call.authorization)
    return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type)


def take_wait(arguments: dict[str, Any], model: type[Waiting] = Waiting) -> float:
    given = {"wait": arguments.pop("wait")} if "wait" in arguments else {}
    return parsed(model, given).wait


async def submitted(call: Call, kind: JobKind, body: dict[str, Any], wait_s: float) -> Job:
    job = await call.client.submit(kind, body, call.authorization)
    return await follow(call.client, job, call.authorization, wait_s, call.report)


# ── the tools ───────────────────────────────────────────────────────────────────────────────


async def search_assets(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    kinds = [name for name in ("query", "asset_id", "image_base64") if name in body]
    if len(kinds) != 1:
        raise ToolFailure(
            ErrorCode.invalid_request, "give exactly one of query, asset_id or image_base64"
        )
    query = {
        api: body.pop(tool)
        for tool, api in (("query", "text"), ("asset_id", "asset_id"), ("mode", "mode"))
        if tool in body
    }
    if "image_base64" in body:
        data = decoded(body.pop("image_base64"))
        query["upload_id"] = await call.client.upload("query-image", data, call.authorization)
    job = ended(await submitted(call, JobKind.search, {**body, "queries": [query]}, SEARCH_WAIT_S))
    if not isinstance(job.result, SearchResult):
        return [job_text(job)]
    hits = [
        {
            "asset_id": hit.asset_id,
            "score": hit.score,
            "filename": hit.filename,
            "metadata": hit.metadata,
            "thumbnail_url": call.link(hit.thumbnail_url),
        }
        for hit in job.result.results[0]
    ]
    return [text({"job_id": job.id, "hits": hits})]


def decoded(image_base64: Any) -> bytes:
    try:
        return base64.b64decode(str(image_base64), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolFailure(ErrorCode.invalid_request, "image_base64: not valid base64") from exc


async def get_asset(call: Call, arguments: dict[str, Any]) -> list[Content]:
    args = parsed(AssetArgs, arguments)
    url = contract.asset_url(args.collection, args.asset_id)
    record = await call.client.json("GET", url, call.authorization)
    for name in ("content_url", "thumbnail_url"):
        record[name] = call.link(record[name])
    thumbnail = await image(call, contract.thumbnail_url(args.collection, args.asset_id))
    return [text(record), thumbnail]


async def list_collections(call: Call, arguments: dict[str, Any]) -> list[Content]:
    page = await call.client.json("GET", contract.COLLECTIONS_PATH, call.authorization)
    return [text({"collections": page["data"]})]


async def ingest(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    wait_s = take_wait(body)
    urls, paths = body.pop("urls", []), body.pop("paths", [])
    if not isinstance(urls, list) or not isinstance(paths, list):
        raise ToolFailure(ErrorCode.invalid_request, "urls and paths are lists")
    items = [{"url": url} for url in urls] + [{"path": path} for path in paths]
    job = ended(await submitted(call, JobKind.embed, {**body, "items": items}, wait_s))
    return [job_text(job)]


async def get_job(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    wait_s = take_wait(body, JobWaiting)
    job_id = parsed(JobArgs, body).job_id
    job = await call.client.job(job_id, call.authorization)
    return [job_text(await follow(call.client, job, call.authorization, wait_s, call.report))]


async def cancel_job(call: Call, arguments: dict[str, Any]) -> list[Content]:
    job_id = parsed(JobArgs, arguments).job_id
    return [job_text(await call.client.cancel(job_id, call.authorization))]


async def generate(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    wait_s = take_wait(body)
    job = ended(await submitted(call, JobKind.generate, body, wait_s))
    contents: list[Content] = [job_text(job)]
    if job.state == JobState.completed and isinstance(job.result, GenerateResult):
        for made in job.result.images[:MAX_IMAGES]:
            contents.append(await image(call, made.content_url))
    return contents


async def find_duplicates(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    wait_s = take_wait(body)
    return [job_text(ended(await submitted(call, JobKind.duplicates, body, wait_s)))]


async def list_kits(call: Call, arguments: dict[str, Any]) -> list[Content]:
    page = await call.client.json("GET", contract.KITS_PATH, call.authorization)
    return [text({"kits": page["data"]})]


async def brand_check(call: Call, arguments: dict[str, Any]) -> list[Content]:
    body = dict(arguments)
    wait_s = take_wait(body)
    return [job_text(ended(await submitted(call, JobKind.brand_check, body, wait_s)))]


# ── the table the server lists ──────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: Schema
    run: Callable[[Call, dict[str, Any]], Awaitable[list[Content]]]
    read_only: bool = True

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(read_only_hint=self.read_only, open_world_hint=False)


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "search_assets",
        "Find assets in a collection from a text query, an asset id or an example image "
        "(base64); answers the best hits with asset id, score, filename, metadata and "
        "thumbnail URL.",
        schemas.SEARCH,
        search_assets,
    ),
    ToolSpec(
        "get_asset",
        "Look at one asset: its record (filename, size, metadata, URLs) and its thumbnail as an "
        "image.",
        schemas.GET_ASSET,
        get_asset,
    ),
    ToolSpec(
        "list_collections",
        "List the collections you can search, with their model and asset count.",
        schemas.LIST_COLLECTIONS,
        list_collections,
    ),
    ToolSpec(
        "ingest",
        "Embed images into a collection (created if missing) from URLs or server paths; runs "
        "an embed job and answers it once it ends or `wait` runs out.",
        schemas.INGEST,
        ingest,
        read_only=False,
    ),
    ToolSpec(
        "get_job",
        "Read a job by id (state, progress, result, errors); with `wait`, hold until it ends.",
        schemas.GET_JOB,
        get_job,
    ),
    ToolSpec(
        "cancel_job",
        "Cancel a queued or running job; what it already stored stays.",
        schemas.CANCEL_JOB,
        cancel_job,
        read_only=False,
    ),
    ToolSpec(
        "generate",
        "Generate images with Gemini from a prompt and reference images (assets, a search, "
        "uploads, URLs); answers the finished job with its images, or the job to poll with "
        "get_job if it runs past `wait`.",
        schemas.GENERATE,
        generate,
        read_only=False,
    ),
    ToolSpec(
        "find_duplicates",
        "Find clusters of near-duplicate assets in a collection (cosine similarity at least "
        "`threshold`); answers the job with its clusters.",
        schemas.FIND_DUPLICATES,
        find_duplicates,
        read_only=False,
    ),
    ToolSpec(
        "list_kits",
        "List your brand kits (latest versions): references, style, palette and the checks "
        "each output made with one must pass; name one as `kit` in generate.",
        schemas.LIST_KITS,
        list_kits,
    ),
    ToolSpec(
        "brand_check",
        "Score every asset of a collection (or those `filter` picks) against a brand kit; "
        "answers the job with the off-brand assets worst first.",
        schemas.BRAND_CHECK,
        brand_check,
        read_only=False,
    ),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
