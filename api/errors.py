"""One error shape for every failure, {"error": {"code", "message"}}, and one table from error
code to HTTP status. Routes declare the codes they can answer with, so the OpenAPI lists
every status each route can give."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.contract import ErrorCode, ErrorResponse
from shared.errors import CodedError, describe_invalid

log = logging.getLogger("assetrag.api")
E = ErrorCode

STATUS: dict[ErrorCode, int] = {
    E.malformed_json: 400,
    E.unauthorized: 401,
    E.not_found: 404,
    E.collection_not_found: 404,
    E.asset_not_found: 404,
    E.upload_not_found: 404,
    E.job_not_found: 404,
    E.kit_not_found: 404,
    E.kit_exists: 409,
    E.off_brand: 422,
    E.image_not_found: 404,
    E.content_not_found: 404,
    E.file_not_found: 404,
    E.method_not_allowed: 405,
    E.collection_exists: 409,
    E.model_mismatch: 409,
    E.job_finished: 409,
    E.job_kind_mismatch: 409,
    E.version_in_use: 409,
    E.reindex_running: 409,
    E.version_not_found: 404,
    E.keyword_search_unavailable: 422,
    E.model_not_allowed: 422,
    E.file_too_large: 413,
    E.decompression_bomb: 413,
    E.too_many_items: 413,
    E.empty_file: 415,
    E.not_an_image: 415,
    E.corrupt_image: 415,
    E.invalid_request: 422,
    E.idempotency_key_reused: 422,
    E.query_too_long: 422,
    E.prompt_too_long: 422,
    E.paths_disabled: 403,
    E.path_outside_roots: 403,
    E.not_a_directory: 422,
    E.rate_limited: 429,
    E.internal_error: 500,
    E.generator_not_configured: 503,
    E.model_not_loaded: 503,
    E.vector_store_unavailable: 503,
    E.redis_unavailable: 503,
    E.blob_store_unavailable: 503,
    E.option_not_supported: 422,
    E.invalid_references: 422,
    E.no_references_found: 422,
    E.webhook_not_configured: 422,
    E.job_not_finished: 409,
    E.unsupported_url: 422,
    E.unresolvable_host: 422,
    E.forbidden_address: 422,
}
# Every route can answer these: a body or parameter that fails validation, a Milvus, Redis or
# blob store that is down, and (with API keys on) a missing key or a spent rate limit.
COMMON = (
    E.invalid_request,
    E.unauthorized,
    E.rate_limited,
    E.vector_store_unavailable,
    E.redis_unavailable,
    E.blob_store_unavailable,
)


def status_of(code: str) -> int:
    try:
        return STATUS[ErrorCode(code)]
    except (ValueError, KeyError):
        log.error("error code %r has no HTTP status; answering 500", code)
        return 500


def responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route that can fail with these codes (and the common ones)."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, *COMMON):
        by_status.setdefault(STATUS[code], []).append(code.value)
    return {
        status: {"model": ErrorResponse, "description": "error codes: " + ", ".join(sorted(names))}
        for status, names in sorted(by_status.items())
    }


def error_response(
    code: str, message: str, headers: Mapping[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status or status_of(code), headers=dict(headers or {}))


async def _coded_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CodedError)
    return error_response(exc.code, exc.message, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        message = f"the body is not valid JSON: {describe_invalid(errors)}"
        return error_response(E.malformed_json, message)
    return error_response(E.invalid_request, describe_invalid(errors))


_HTTP_CODES = {404: E.not_found, 405: E.method_not_allowed, 401: E.unauthorized}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, E.invalid_request)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    # Starlette's own 400 (a multipart body it cannot parse) is a request that fails
    # validation: answered as one, with the status every route documents for it.
    status = status_of(code) if exc.status_code == 400 else exc.status_code
    return error_response(code, str(exc.detail), headers, status=status)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. (Starlette names only the first route
    that matches the path, so /v1/collections would claim GET alone.)"""
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    # Redis restarting (under `assetrag up` it is back within seconds): worth a retry.
    message = f"Redis did not answer ({type(exc).__name__}); try again shortly"
    return error_response(E.redis_unavailable, message, {"Retry-After": "2"})


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(E.internal_error, f"{type(exc).__name__}: the server failed")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(CodedError, _coded_error)
    app.add_exception_handler(redis.RedisError, _redis_down)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
