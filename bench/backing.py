"""PostgreSQL (with pgvector) and Redis in containers: what the service and the baseline run on."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from docker.models.containers import Container

from tests.containers import wait_healthy

from . import BenchError
from .lab import Lab, free_port

# The official images the project's compose.yaml names; CI and this machine set local stand-ins.
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE") or "pgvector/pgvector:pg17"
REDIS_IMAGE = os.environ.get("REDIS_IMAGE") or "redis:7-alpine"
USER = PASSWORD = "postgres"
DATABASE = "bench"
SECOND = 1_000_000_000  # Docker healthcheck durations are in nanoseconds


@dataclass(frozen=True)
class Backing:
    """The two containers, reachable from the host on loopback ports and by name in the lab."""

    postgres: Container
    redis: Container
    postgres_port: int
    redis_port: int

    def database_url(self, *, in_lab: bool = False) -> str:
        """DATABASE_URL for a process on the host, or for a container in the lab."""
        host = self.postgres.name if in_lab else f"127.0.0.1:{self.postgres_port}"
        return f"postgresql://{USER}:{PASSWORD}@{host}/{DATABASE}"

    def redis_url(self, *, in_lab: bool = False) -> str:
        """REDIS_URL for a process on the host, or for a container in the lab."""
        host = self.redis.name if in_lab else f"127.0.0.1:{self.redis_port}"
        return f"redis://{host}/0"

    def psql(self, *statements: str, database: str = DATABASE) -> str:
        """Run SQL statements, each in a transaction of its own (VACUUM needs that)."""
        command = ["psql", "-h", "127.0.0.1", "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1"]
        for statement in statements:
            command += ["-c", statement]
        code, output = self.postgres.exec_run(command, environment={"PGPASSWORD": PASSWORD})
        if code != 0:
            msg = f"psql failed ({code}): {output.decode(errors='replace')}"
            raise BenchError(msg)
        return str(output.decode())

    @contextmanager
    def cache_emptied(self, every: float = 0.05) -> Iterator[None]:
        """Redis emptied (FLUSHDB) every `every` seconds while the block runs, so that a
        document read again later than that is a cache miss, however fast the reads come."""
        stop, failures = threading.Event(), []

        def empty() -> None:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as redis:
                    while True:
                        redis.sendall(b"*1\r\n$7\r\nFLUSHDB\r\n")
                        if not redis.recv(64).startswith(b"+OK"):
                            failures.append("FLUSHDB was refused")
                            return
                        if stop.wait(every):
                            return
            except OSError as error:
                failures.append(repr(error))

        thread = threading.Thread(target=empty, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
        if failures:
            msg = f"could not keep Redis empty during a cache-miss run: {failures[0]}"
            raise BenchError(msg)

    def cache_lookups(self) -> tuple[int, int]:
        """Redis's hits and misses of key lookups so far."""
        code, output = self.redis.exec_run(["redis-cli", "info", "stats"])
        if code != 0:
            msg = f"redis-cli failed ({code}): {output.decode(errors='replace')}"
            raise BenchError(msg)
        stats = dict(line.split(":", 1) for line in output.decode().splitlines() if ":" in line)
        return int(stats["keyspace_hits"]), int(stats["keyspace_misses"])


def start_backing(lab: Lab) -> Backing:
    """Start PostgreSQL and Redis, published on loopback, and wait until PostgreSQL is ready."""
    postgres_port, redis_port = free_port(), free_port()
    postgres = lab.start(
        POSTGRES_IMAGE,
        "postgres",
        environment={"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD},
        ports={"5432/tcp": ("127.0.0.1", postgres_port)},
        # Over TCP: the image's first start serves a socket only while it initialises.
        healthcheck={
            "test": ["CMD-SHELL", f"pg_isready -h 127.0.0.1 -U {USER}"],
            "interval": SECOND // 5,
            "retries": 300,
        },
    )
    redis = lab.start(REDIS_IMAGE, "redis", ports={"6379/tcp": ("127.0.0.1", redis_port)})
    wait_healthy(postgres)
    backing = Backing(postgres, redis, postgres_port, redis_port)
    # UTF-8 whatever the image's locale (one without locales gives SQL_ASCII, whose text psycopg
    # returns as bytes), as the official images' databases are.
    backing.psql(
        f"CREATE DATABASE {DATABASE} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0",
        database="postgres",
    )
    return backing
