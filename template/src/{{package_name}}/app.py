"""The application factory: Settings in, a configured FastAPI app out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_fastapi_instrumentator import Instrumentator

from . import api, errors
from .config import Settings, get_settings
from .middleware import BodyLimitMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware
from .resources import open_resources

DISTRIBUTION = __package__.replace("_", "-")


@contextmanager
def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Iterator[None]:
    """Serve `registry` to Prometheus on its own port (0: not at all), never on the public one."""
    if not port:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        msg = f"cannot serve metrics on {host}:{port} ({exc}): set METRICS_PORT to a free one, or 0"
        raise RuntimeError(msg) from exc
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; connections open when it starts serving and close when it stops."""
    settings = settings or get_settings()
    # One registry per app, so that apps built side by side (tests) don't share metrics.
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        with serve_metrics(registry, settings.host, settings.metrics_port):
            async with open_resources(settings) as resources:
                yield {"resources": resources}

    docs = settings.serves_api_docs
    app = FastAPI(
        title=DISTRIBUTION,
        version=version(DISTRIBUTION),
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.include_router(api.router)
    errors.install(app)
    # Each middleware added wraps the ones before it: the last one sees the request first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost, so that every answer is counted, the 500s of RequestContextMiddleware too.
    Instrumentator(registry=registry).instrument(app)
    return app
