"""What the service tells Prometheus, and the port it tells it on.

Every process serves its own registry on METRICS_PORT (never on the public port): the API and each
service their HTTP exchanges (HttpMetrics), the release they run and their database pool; the
worker its jobs and the queue (worker.py). monitoring/alerts.yml and monitoring/dashboard.json use
these names.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

from . import DISTRIBUTION

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .config import HttpSettings

# Latency buckets in seconds: fine ones over all routes (quantiles, the latency alerts), coarse
# ones per route. The same as prometheus-fastapi-instrumentator's, which FastAPI dashboards read.
SUBSECOND = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75)
FINE_BUCKETS = (*SUBSECOND, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60)
COARSE_BUCKETS = (0.1, 0.5, 1)
# The handler of a path no route matches: scanners' paths would otherwise each add series.
UNMATCHED = "none"


def process_registry() -> CollectorRegistry:
    """A registry of its own (apps built side by side in tests share none) with the process's
    CPU, memory, file descriptors and start time: what restart and resource alerts read."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def build_info(registry: CollectorRegistry, settings: HttpSettings) -> None:
    """app_build_info: 1, labelled with what the process runs (version, release...)."""
    labels = {
        "version": version(DISTRIBUTION),
        "release": settings.image_tag,
        "git_sha": settings.git_sha,
        "environment": settings.environment,
    }
    info = Gauge(
        "app_build_info", "The release this process runs (1)", list(labels), registry=registry
    )
    info.labels(**labels).set(1)


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP exchange by route template and method.

    http_requests_total{handler, method, status}: status by class ("2xx", "5xx");
    http_request_duration_highr_seconds: every exchange, fine buckets;
    http_request_duration_seconds{handler, method}: coarse buckets, to find the slow routes.
    The route is the one the router picked (FastAPI leaves it in the scope), so that counting
    costs no second match of the path.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route, method and status class",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_highr_seconds",
            "Time to answer an HTTP request, over all routes",
            buckets=FINE_BUCKETS,
            registry=registry,
        )
        self.route_latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route and method",
            ["handler", "method"],
            buckets=COARSE_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception left the app
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            duration = time.perf_counter() - started
            handler = getattr(scope.get("route"), "path", UNMATCHED)
            method = scope["method"]
            self.requests.labels(handler, method, f"{status // 100}xx").inc()
            self.latency.observe(duration)
            self.route_latency.labels(handler, method).observe(duration)


class PoolCollector(Collector):
    """The engine's connection pool when Prometheus asks: connections in use, and its size.

    db.py gives the pool no overflow, so its size is all it may open; an engine without a pool
    (DATABASE_POOL_SIZE=0) reports nothing.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.pool = engine.sync_engine.pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """db_pool_connections_in_use and db_pool_connections_max."""
        if not isinstance(self.pool, QueuePool):
            return
        yield GaugeMetricFamily(
            "db_pool_connections_in_use",
            "Database connections checked out of the pool",
            value=self.pool.checkedout(),
        )
        yield GaugeMetricFamily(
            "db_pool_connections_max",
            "Database connections the pool may hold",
            value=self.pool.size(),
        )


@contextmanager
def registered(registry: CollectorRegistry, collectors: Iterable[Collector]) -> Iterator[None]:
    """`collectors` in `registry` while the block runs."""
    added = list(collectors)
    for collector in added:
        registry.register(collector)
    try:
        yield
    finally:
        for collector in added:
            registry.unregister(collector)


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
