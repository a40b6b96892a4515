"""The API's application factory: Settings in, a configured FastAPI app out."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from . import DISTRIBUTION, api
from .api.health import CHECKS
from .config import Settings, get_settings
from .metrics import PoolCollector
from .resources import open_resources
from .web import build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; its connections open when it starts serving and close when it stops."""
    settings = settings or get_settings()
    return build_app(
        settings,
        api.router,
        title=DISTRIBUTION,
        resources=partial(open_resources, settings),
        checks=CHECKS,
        collectors=lambda resources: [PoolCollector(resources.engine)],
    )
