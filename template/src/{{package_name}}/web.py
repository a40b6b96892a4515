"""The HTTP contract of every app in this package, the API and each service: one builder.

`build_app` gives an app its probes (HEALTH_PATH, READY_PATH) and GET /version, Prometheus
metrics on METRICS_PORT (never on the public port), the middleware (middleware.py), JSON error
bodies (errors.py), and API docs outside deployments. Apps differ only by their routes, and by
the connections they open and readiness checks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, Security, status
from fastapi.security import APIKeyHeader
from prometheus_client.registry import Collector
from pydantic import BaseModel

from . import DISTRIBUTION, errors, telemetry
from .config import HttpSettings
from .metrics import HttpMetrics, build_info, process_registry, registered, serve_metrics
from .middleware import (
    BodyLimitMiddleware,
    CorsMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from .probes import HEALTH_PATH, READY_PATH

CHECK_TIMEOUT_SECONDS = 3

logger = logging.getLogger(__name__)


async def get_http_settings(request: Request) -> HttpSettings:
    """The settings the app was built with."""
    return cast("HttpSettings", request.app.state.settings)


HttpSettingsDep = Annotated[HttpSettings, Depends(get_http_settings)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(
    settings: HttpSettingsDep, api_key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """Reject requests without the app's API key (API_KEY; a service's may be its own)."""
    expected = settings.api_key.get_secret_value()
    if api_key is None or not secrets.compare_digest(api_key.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Missing or invalid X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str


class Readiness(BaseModel):
    """Readiness: each dependency's check, "ok" or what failed.

    "ready": every check passed; "degraded": one the app can serve without failed (it still
    answers 200); "unavailable": one it cannot serve without failed (503).
    """

    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, str]


class Version(BaseModel):
    """What is running: the package version and the build that produced it."""

    version: str
    git_sha: str
    image_tag: str
    environment: str


@dataclass(frozen=True)
class Check:
    """A dependency readiness asks; `required` when the app cannot serve without it."""

    # Called with what the app's `resources` opened (see build_app).
    probe: Callable[[Any], Awaitable[None]]
    required: bool


async def _run(name: str, check: Check, resources: object) -> str:
    try:
        await asyncio.wait_for(check.probe(resources), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure fails the check
        logger.warning("readiness check %s failed: %r", name, exc)
        return f"failed: {type(exc).__name__}"
    return "ok"


def probe_router(checks: Mapping[str, Check]) -> APIRouter:
    """Liveness, readiness asking `checks`, and version: what orchestrators and people ask."""
    router = APIRouter(tags=["health"])

    @router.get(HEALTH_PATH)
    async def health() -> Health:
        """Liveness: answers while the process runs, without touching dependencies."""
        return Health(status="ok")

    @router.get(
        READY_PATH,
        responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
    )
    async def ready(request: Request, response: Response) -> Readiness:
        """Readiness: 503 when a dependency the app cannot serve without fails, else 200."""
        resources = request.state.resources
        results = await asyncio.gather(
            *(_run(name, check, resources) for name, check in checks.items())
        )
        outcomes = dict(zip(checks, results, strict=True))
        failed = {name for name, result in outcomes.items() if result != "ok"}
        if any(checks[name].required for name in failed):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return Readiness(status="unavailable", checks=outcomes)
        return Readiness(status="degraded" if failed else "ready", checks=outcomes)

    @router.get("/version")
    async def get_version(settings: HttpSettingsDep) -> Version:
        """The running version, git commit and image tag."""
        return Version(
            version=version(DISTRIBUTION),
            git_sha=settings.git_sha,
            image_tag=settings.image_tag,
            environment=settings.environment,
        )

    return router


@asynccontextmanager
async def no_resources() -> AsyncIterator[None]:
    """What an app that holds no connections opens: nothing."""
    yield None


def build_app(
    settings: HttpSettings,
    router: APIRouter,
    *,
    title: str,
    component: str = "api",
    resources: Callable[[], AbstractAsyncContextManager[object]] = no_resources,
    checks: Mapping[str, Check] | None = None,
    collectors: Callable[[Any], Iterable[Collector]] = lambda _: (),
) -> FastAPI:
    """An app serving `router` under the HTTP contract; `resources` are open while it serves.

    Readiness asks each of `checks`; with none, the app is ready as soon as it serves. Metrics
    add what `collectors` makes of the open resources. Traces and errors name `component`.
    """
    registry = process_registry()
    build_info(registry, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        try:
            with serve_metrics(registry, settings.host, settings.metrics_port):
                async with resources() as opened:
                    with registered(registry, collectors(opened)):
                        yield {"resources": opened}
        finally:
            app.state.stop_telemetry()  # sends the spans and errors still buffered

    docs = settings.serves_api_docs
    app = FastAPI(
        title=title,
        version=version(DISTRIBUTION),
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        # BodyLimitMiddleware refuses an oversized body before routing, on every operation.
        responses=errors.responses(413),
    )
    app.state.settings = settings
    app.include_router(probe_router(checks or {}))
    app.include_router(router)
    errors.install(app)
    # Each middleware added wraps the ones before it: the last one sees the request first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CorsMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestContextMiddleware, sample_rate=settings.access_log_sample_rate)
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost, so that every answer is counted, the 500s of RequestContextMiddleware too.
    app.add_middleware(HttpMetrics, registry=registry)
    # Traces wrap every middleware, so that a request's span covers all it went through.
    app.state.stop_telemetry = telemetry.start(app, settings, component)
    return app
