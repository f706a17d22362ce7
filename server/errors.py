"""The one place where errors become HTTP responses: JSON under /api, an HTML page elsewhere.

Every error body has the same shape, `{"error": {"status": 422, "message": "..."}}`, and no
error ever sends a stack trace to the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from indexer.errors import (
    DocumentNotFound,
    IndexBusy,
    IndexCorrupt,
    IndexNotFound,
    InvalidQuery,
    ModelMismatch,
    ModelUnavailable,
    ParaciteError,
)
from indexer.retrieval import MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, MODES
from server.deps import get_templates

log = logging.getLogger("uvicorn.error")

STATUS_OF: dict[type[ParaciteError], int] = {
    InvalidQuery: 422,
    DocumentNotFound: 404,
    IndexNotFound: 503,
    IndexCorrupt: 503,
    IndexBusy: 503,
    ModelMismatch: 503,
    ModelUnavailable: 503,
}
INTERNAL_ERROR = "internal error; the server log has the details"
BAD_JSON = "the request body is not valid JSON"


def is_api_path(path: str) -> bool:
    """Whether `path` is the JSON API's (or the health check's): "/api" and all below it."""
    return path == "/api" or path.startswith("/api/") or path == "/healthz"


def wants_json(request: Request) -> bool:
    """API and health-check clients get JSON; browsers on the pages get HTML."""
    return is_api_path(request.url.path)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one JSON error body: `{"error": {"status": ..., "message": ...}}`."""
    return JSONResponse({"error": {"status": status, "message": message}}, status, headers)


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The error as JSON or as the HTML error page, depending on where it happened."""
    if wants_json(request):
        return json_error(status, message, headers)
    return get_templates(request).TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "query": request.query_params.get("q", "")},
        status_code=status,
        headers=headers,
    )


def status_of(error: ParaciteError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500


async def _domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ParaciteError)
    return error_response(request, status_of(error), str(error))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    if error.status_code == 400:
        # FastAPI's only 400: a JSON body it could not decode (e.g. invalid UTF-8 in it).
        return error_response(request, 422, BAD_JSON, headers)
    return error_response(request, error.status_code, str(error.detail), headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette names only the first route's)."""
    probe = {
        "type": "http",
        "path": request.url.path,
        "root_path": request.scope.get("root_path", ""),
    }
    methods = {
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**probe, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    }
    if "GET" in methods:
        methods.add("HEAD")  # see server.app.HeadAsGet
    return sorted(methods)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return error_response(request, 422, describe_validation(error))


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=error)
    return error_response(request, 500, INTERNAL_ERROR)


# What each request field must be, said as a sentence (instead of pydantic's wording).
FIELD_RULES = {
    "q": f"the question q must be text of 1 to {MAX_QUERY_CHARS} characters",
    "k": f"k must be a whole number from 1 to {MAX_K}",
    "mode": f"mode must be one of {', '.join(MODES)}",
    "offset": f"offset must be a whole number from 0 to {MAX_OFFSET}",
}


def describe_validation(error: RequestValidationError) -> str:
    """One sentence per bad field: 'k must be a whole number from 1 to 50'."""
    parts: list[str] = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            sentence = BAD_JSON
        elif tuple(item.get("loc", ())) == ("body",):
            sentence = 'the request body must be a JSON object such as {"q": "..."}'
        else:
            where = [str(part) for part in item.get("loc", ()) if part not in ("query", "body")]
            field = ".".join(where) or "request"
            rule = FIELD_RULES.get(field)
            if item.get("type") == "missing":
                sentence = f"{field} is required" + (f": {rule}" if rule else "")
            else:
                sentence = rule or f"{field} is not valid"
        if sentence not in parts:
            parts.append(sentence)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ParaciteError, _domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
