"""What the service tells Prometheus beyond its HTTP exchanges, and the port it tells it on.

Every process serves its own registry on METRICS_PORT (never on the public port): the API and each
service their HTTP metrics (web.py), the release they run and their database pool; the worker its
jobs and the queue (worker.py). monitoring/alerts.yml and monitoring/dashboard.json use these names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

from . import DISTRIBUTION

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .config import HttpSettings


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
