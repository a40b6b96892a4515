"""Service throughput: the generated API against the naive baseline, on one database, with wrk."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import BenchError
from .backing import Backing, start_backing
from .client import call, wait_for_200
from .context import BASE_ENV, Process, Run, check_output, start
from .dataset import Endpoint, endpoints, fill_page, fingerprint, keep_page, seed
from .lab import Lab, free_port
from .project import ROOT, Project, copier_copy
from .wrk import Load, Result, lua_script, run

Command = Callable[[int], list[str | Path]]  # an app's command line, given its port
HEALTH_PATH = "/health"  # the liveness path of the image's contract (probes.py)
APPS = ("slipway", "baseline")
# One worker each; wrk's threads and connections, on loopback.
THREADS, CONNECTIONS = 2, 32
METHOD = [
    "**service**: the default project (`{}` answers: pgvector and Redis on) is rendered, its "
    "locked runtime dependencies installed with uv, migrated with its own `migrate` command, and "
    "1,000 documents stored through its API, every other one with an embedding. It serves with "
    "its own `serve` command (one uvicorn worker) in production mode, its defaults otherwise "
    "(an access log line per request, to a file). The naive baseline "
    "(`bench/baseline.py`) serves the same endpoints from the same database with one uvicorn "
    "worker: sync handlers, a SQLAlchemy Session over psycopg, no cache, whole rows, uvicorn's "
    "own access log. Before measuring, the bench checks that both give the same answers.",
    f"**load**: `wrk -t{THREADS} -c{CONNECTIONS}` on 127.0.0.1, the service then the baseline for "
    "each endpoint in turn, every round; req/s and p50/p99 latency from wrk's own histogram.",
    "**list with/without embeddings**: both read the newest page of 20 with the same query; the "
    "bench clears that page's embeddings in the database for `list_without` and restores them "
    "for `list_with`.",
    "**cache hit/miss**: a hit reads one document again and again; a miss cycles through all "
    "1,000 documents, each wrk thread from its own start, while the bench empties Redis "
    "(`FLUSHDB`) every 50 ms, so that a document is gone when it comes round again: each read "
    "is a Redis lookup that misses, a database read and a Redis write, as a real miss is. "
    "`service.slipway.get_*.cache_hits` is the share of Redis lookups that hit during each run.",
]


def slipway_settings(api_key: str, backing: Backing, *, in_lab: bool = False) -> dict[str, str]:
    """The service's environment: production mode, and the bench's database and Redis."""
    return {
        "ENVIRONMENT": "production",
        "API_KEY": api_key,
        "DATABASE_URL": backing.database_url(in_lab=in_lab),
        "REDIS_URL": backing.redis_url(in_lab=in_lab),
    }


@dataclass
class Served:
    """An app the bench serves, with a wrk script per endpoint."""

    name: str
    url: str
    process: Process
    scripts: dict[str, Path]


class ServiceBench:
    """Renders, installs and serves the default project and the baseline; loads both with wrk."""

    method = METHOD

    def __init__(self, run: Run, lab: Lab, stack: ExitStack, seconds: float) -> None:
        self.run, self.lab, self.stack, self.seconds = run, lab, stack, seconds
        self.api_key = secrets.token_hex(32)
        self.headers = {"X-API-Key": self.api_key}
        self.served: dict[str, Served] = {}
        self.page_filled = True

    def setup(self) -> None:
        """Everything up to the first measurement, warm-up included."""
        path = self.run.path("service")
        copier_copy(ROOT, path)
        self.project = Project(path)
        self.run.say(f"rendered the default project ({self.project.slug}); installing it")
        self.project.install()
        self.backing = start_backing(self.lab)
        self.settings = slipway_settings(self.api_key, self.backing)
        env = {**BASE_ENV, **self.settings}
        check_output(self.project.command("migrate"), env=env, cwd=path, timeout=120)
        self.serve("slipway", lambda _: self.project.command("serve"), self.settings)
        dimensions = int(self.project.answers["embedding_dimensions"])
        dataset = seed(self.served["slipway"].url, self.headers, dimensions)
        keep_page(self.backing)
        self.run.say(f"stored {len(dataset.ids)} documents ({dimensions}-dimension embeddings)")
        self.serve("baseline", self.baseline_command, self.baseline_settings())
        self.endpoints = endpoints(dataset)
        for served in self.served.values():
            served.scripts = self.write_scripts(served.name)
        self.check_agreement()
        self.warm_up()

    def serve(self, name: str, command: Command, settings: dict[str, str]) -> None:
        """Start an app on a free loopback port and wait for its liveness path."""
        port = free_port()
        env = {**BASE_ENV, **settings, "HOST": "127.0.0.1", "PORT": str(port)}
        env["METRICS_PORT"] = str(free_port())
        log = self.run.path(f"{name}.log")
        process = start(name, command(port), env=env, cwd=self.project.path, log=log)
        self.stack.callback(process.stop)
        url = f"http://127.0.0.1:{port}"
        wait_for_200(url + HEALTH_PATH, timeout=60, interval=0.1, failed=process.failed)
        self.served[name] = Served(name, url, process, {})

    def baseline_command(self, port: int) -> list[str | Path]:
        """uvicorn serving bench/baseline.py from the project's virtualenv, one worker."""
        return [
            self.project.bin("uvicorn"),
            *("--factory", "baseline:create_app", "--app-dir", Path(__file__).parent),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "info"),
        ]

    def baseline_settings(self) -> dict[str, str]:
        """The baseline's environment."""
        return {"DATABASE_URL": self.backing.database_url(), "API_KEY": self.api_key}

    def write_scripts(self, app: str) -> dict[str, Path]:
        """A wrk script per endpoint."""
        scripts = {}
        for endpoint in self.endpoints:
            script = self.run.path(f"{app}-{endpoint.name}.lua")
            script.write_text(lua_script(endpoint.load, self.headers, THREADS))
            scripts[endpoint.name] = script
        return scripts

    def check_agreement(self) -> None:
        """Fail unless the service and the baseline answer every endpoint alike."""
        for endpoint in self.endpoints:
            self.switch_page(endpoint.page_filled)
            load, body = endpoint.load, self.body(endpoint.load)
            answers = [
                fingerprint(call(load.method, served.url + load.path, body, self.headers))
                for served in self.served.values()
            ]
            if answers[0] != answers[1]:
                msg = (
                    f"the baseline answers {load.method} {load.path} unlike the service: "
                    f"{str(answers[1])[:300]} instead of {str(answers[0])[:300]}"
                )
                raise BenchError(msg)
        self.run.say("the service and the baseline answer every endpoint alike")

    @staticmethod
    def body(load: Load) -> object:
        """The load's body as JSON data, for a single request."""
        return None if load.body is None else json.loads(load.body)

    def switch_page(self, filled: bool) -> None:
        """Switch the newest page's embeddings, if they are not as wanted."""
        if filled != self.page_filled:
            fill_page(self.backing, filled=filled)
            self.page_filled = filled

    def warm_up(self) -> None:
        """One second of every load on both apps, not recorded."""
        for endpoint in self.endpoints:
            self.switch_page(endpoint.page_filled)
            for served in self.served.values():
                self.load(served, endpoint, seconds=1)
        self.run.say("warmed up every endpoint on both apps")

    def load(self, served: Served, endpoint: Endpoint, seconds: float) -> Result:
        """One wrk run of an endpoint on an app."""
        return run(
            served.url,
            endpoint.load,
            served.scripts[endpoint.name],
            threads=THREADS,
            connections=CONNECTIONS,
            seconds=seconds,
        )

    def round(self) -> None:
        """Every endpoint, the service then the baseline."""
        for endpoint in self.endpoints:
            self.switch_page(endpoint.page_filled)
            for served in self.served.values():
                self.measure(served, endpoint)

    def measure(self, served: Served, endpoint: Endpoint) -> None:
        """Load one endpoint on one app and record req/s, p50 and p99 (and the cache's hits)."""
        before = self.backing.cache_lookups()
        with self.backing.cache_emptied() if endpoint.cache_emptied else nullcontext():
            result = self.load(served, endpoint, self.seconds)
        name = f"service.{served.name}.{endpoint.name}"
        detail = f" (p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms)"
        self.run.record(f"{name}.rps", result.rps, "req/s", detail)
        self.run.figures.add(f"{name}.p50", result.p50_ms, "ms")
        self.run.figures.add(f"{name}.p99", result.p99_ms, "ms")
        if served.name == "slipway" and endpoint.name.startswith("get_"):
            after = self.backing.cache_lookups()
            hits, misses = (now - then for now, then in zip(after, before, strict=True))
            self.run.record(f"{name}.cache_hits", hits / max(hits + misses, 1), "share")
