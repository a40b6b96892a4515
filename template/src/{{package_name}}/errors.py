"""Error responses: one JSON shape, carrying the request id, for every error the API answers.

A database or job queue that cannot be reached is a 503 with Retry-After, never a 500: the
request was fine, and the same request may succeed in a few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from .logs import request_id

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# SQLSTATEs of a database that cannot be used right now: connection failures (class 08), too
# many connections, and a server shutting down, restarting or still starting up.
UNAVAILABLE_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")

DESCRIPTIONS = {
    400: "The request body is not valid JSON text (e.g. not UTF-8)",
    401: "The X-API-Key header is missing or wrong",
    404: "Nothing exists at this path",
    413: "The request body is larger than MAX_BODY_BYTES",
    422: "The request does not match the schema; `detail` lists each mismatch",
    503: "A service the request needs is unavailable: retry after Retry-After seconds",
}


class Problem(BaseModel):
    """An error: what went wrong, and the request id to quote when asking about it."""

    detail: str
    request_id: str


class Mismatch(BaseModel):
    """Where a request differs from the schema, and how."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A request that does not match the schema, with every mismatch."""

    detail: list[Mismatch]
    request_id: str


def responses(*statuses: int, streaming: bool = False) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of these error statuses, for a router's or route's `responses`.

    FastAPI documents a `model` in the media type of the route's response class; a `streaming`
    route's errors are JSON all the same, so they name their schema (which the JSON routes
    register) instead.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = ValidationProblem if status == 422 else Problem
        entry: dict[str, Any] = {"description": DESCRIPTIONS[status]}
        if streaming:
            reference = {"$ref": f"#/components/schemas/{model.__name__}"}
            entry["content"] = {"application/json": {"schema": reference}}
        else:
            entry["model"] = model
        if status == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        documented[status] = entry
    return documented


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error response in the shape every error of this API has."""
    return JSONResponse(
        {"detail": detail, "request_id": request_id.get() or ""}, status, headers=headers
    )


def _readable(text: str) -> str:
    # Messages may quote the input; a lone surrogate in it could not be encoded as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _documented_methods(app: FastAPI, path: str) -> set[str]:
    """The methods the OpenAPI document lists for `path`, by its most specific path template.

    Starlette's 405 names the methods of one route only, and a path has a route per method.
    """
    segments = path.strip("/").split("/")
    matches: dict[int, set[str]] = {}
    for template, operations in app.openapi()["paths"].items():
        parts = template.strip("/").split("/")
        if len(parts) == len(segments) and all(
            part.startswith("{") or part == segment
            for part, segment in zip(parts, segments, strict=True)
        ):
            parameters = sum(part.startswith("{") for part in parts)
            matches.setdefault(parameters, set()).update(map(str.upper, operations))
    methods = matches[min(matches)] if matches else set()
    return methods | {"HEAD"} if "GET" in methods else methods


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says a service could not be reached, not that a request to it failed."""
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return exc.connection_invalidated or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    return isinstance(exc, PoolTimeoutError | OSError)


def install(app: FastAPI) -> None:
    """Answer HTTP errors, invalid requests and unavailable services with JSON error bodies."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := _documented_methods(app, request.url.path)):
            headers["Allow"] = ", ".join(sorted(methods))
        return problem(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The input is not echoed: it may be large, secret, or not JSON at all (NaN, surrogates).
        mismatches = [
            {
                "loc": [loc if isinstance(loc, int) else _readable(str(loc)) for loc in e["loc"]],
                "msg": _readable(e["msg"]),
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": mismatches, "request_id": request_id.get() or ""}, 422)

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        if not is_unavailable(exc):
            raise exc  # a statement that failed is a bug: RequestContextMiddleware answers 500
        logger.warning("a service the request needs is unavailable: %r", exc)
        return problem(
            503,
            "A service this request needs is unavailable; retry later",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # OSError covers connections refused or timed out, to the database and the job queue alike.
    for error in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(error, unavailable)
