"""The application factory: Settings in, a configured FastAPI app out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator

from . import api
from .config import Settings, get_settings
from .logs import RequestContextMiddleware
from .resources import open_resources

DISTRIBUTION = __package__.replace("_", "-")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; connections open when it starts serving and close when it stops."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        async with open_resources(settings) as resources:
            yield {"resources": resources}

    app = FastAPI(
        title=DISTRIBUTION,
        version=version(DISTRIBUTION),
        lifespan=lifespan,
        docs_url=None if settings.environment == "production" else "/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.include_router(api.router)
    # One registry per app, so that apps built side by side (tests) don't share metrics.
    Instrumentator(registry=CollectorRegistry()).instrument(app).expose(
        app, include_in_schema=False
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestContextMiddleware)
    return app
