"""What every HTTP exchange goes through: a request id, security headers, a body size limit.

From the outside in (see app.py): SecurityHeadersMiddleware, RequestContextMiddleware, CORS when
configured, BodyLimitMiddleware, then FastAPI's routing and exception handlers (errors.py).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import TYPE_CHECKING

from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from .errors import problem
from .logs import request_id
from .probes import HEALTH_PATH, READY_PATH

if TYPE_CHECKING:
    from starlette.datastructures import Headers
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
# Sent on HTTPS responses only: browsers then refuse plain HTTP to this host for two years.
HSTS = ("strict-transport-security", "max-age=63072000")
# Asked every few seconds by orchestrators and load balancers: logged only when they fail.
PROBE_PATHS = frozenset({HEALTH_PATH, READY_PATH})

access_log = logging.getLogger("access")
logger = logging.getLogger(__name__)


class SecurityHeadersMiddleware:
    """Add the security headers to every response that does not set them itself.

    The scheme is https behind a TLS proxy whose X-Forwarded-Proto uvicorn trusts
    (FORWARDED_ALLOW_IPS).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(SECURITY_HEADERS)
        if scope["scheme"] == "https":
            headers.update([HSTS])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(
                        (name.encode(), value.encode())
                        for name, value in headers.items()
                        if name.encode() not in present
                    ),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """Give every request an id (taken from X-Request-ID or new), echo it, and log the request.

    The access log holds every failed request (4xx, 5xx) and a `sample_rate` share of the others
    (ACCESS_LOG_SAMPLE_RATE), successful probes excepted: at thousands of requests a second, a
    line each is a good part of the work; metrics count them all.
    An exception no handler took is logged with its traceback and answered with a JSON 500 that
    carries the request id, so that the log line can be found from the client's report.
    """

    def __init__(self, app: ASGIApp, sample_rate: float = 1.0) -> None:
        self.app = app
        self.sample_rate = sample_rate

    def logs(self, path: str, status: int | None) -> bool:
        """Whether the access log gets a line for this request."""
        if status is None or status >= 400:
            return True
        if path in PROBE_PATHS:
            return False
        return random.random() < self.sample_rate  # noqa: S311 - a sample, no secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:128]
        rid = rid or uuid.uuid4().hex
        token = request_id.set(rid)
        # The request's trace span, when tracing is on (telemetry.py), carries the id too.
        trace.get_current_span().set_attribute("request.id", rid)
        status: int | None = None
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), rid.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status is not None:  # the response has started: only closing the connection tells
                raise
            await problem(500, "Internal server error")(scope, receive, send_with_id)
        finally:
            if self.logs(scope["path"], status):
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id.reset(token)


class BodyLimitMiddleware:
    """Answer 413 to a request whose body is larger than `max_bytes`, before it is parsed.

    A declared Content-Length over the limit is refused before the body is read; a chunked body
    is counted as it arrives, and reading stops once it is over.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"The request body is larger than {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await problem(413, too_large)(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets an HTTPException from the body through to errors.py.
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, receive_within_limit, send)


class CorsMiddleware(CORSMiddleware):
    """Starlette's CORS, whose refused preflight is an error like the others: JSON, a request id."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        # The CORS headers stay (Vary, Access-Control-Allow-Methods); the body becomes JSON.
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return problem(400, bytes(response.body).decode(), headers)
