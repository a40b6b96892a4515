"""Slow tier: the single-VM stack end to end, on this machine's Docker engine, under load.

Builds v1, v2 (adds a column), v3 and a broken v4 of the vm variant with two extra services and
releases them with the project's own release engine (VM_HOST=local) while two threads send HTTPS
requests through nginx on loopback, reading and writing, to the API and to both services; after
every release, all three serve the same release. The scenarios: rollbacks across the migration
that walk back and then refuse, a release that never becomes healthy, two deploys at once, and a
deploy killed as it starts each of its commands and run again. No request may fail;
build/e2e-results.json gets the counts per scenario. Then backups: the scheduled one that ran as
the stack started, one on demand, a drill that restores it beside the live database and compares
rows and the Alembic revision, and a restore that replaces the database. Then monitoring: Prometheus
scrapes every component of the serving colour, the exporters and the backup service's figures,
every metric the alert rules read is there, and with PostgreSQL stopped, the 5xx error-rate alert
fires and reaches Alertmanager. Requests are bounded in number and rate, and go to 127.0.0.1
only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.models.containers import Container

from . import containers
from .conftest import Render
from .containers import base_image, build, eventually
from .matrix import WITH_SERVICES
from .repos import EXPAND, edit

pytestmark = pytest.mark.e2e

API_KEY = secrets.token_hex(32)
REPOSITORY = "slipway-e2e/my-service"
RESULTS = Path(__file__).resolve().parents[1] / "build" / "e2e-results.json"
MAX_REQUESTS = 40_000
# Below the per-client rate limit of deploy/vm/nginx/api.conf (20 requests a second).
PAUSE = 0.125  # seconds between requests, per thread
# The vm variant with every feature and two extra services, each released blue-green with the API.
[VARIANT] = [variant for variant in WITH_SERVICES if variant.deploy_target == "vm"]
# What the reading thread asks in turn: the API's readiness, and each service's example route.
READS = ["/health/ready", *(f"/{service}/hello" for service in VARIANT.services)]
# What every tenth request writes in turn: a document, and an item of each service that owns
# tables (its own table, migrated by each release with the API's).
WRITES = ["/documents", *(f"/{service}/items" for service in VARIANT.service_tables)]


@dataclass
class Phase:
    """What the load saw while one step ran."""

    name: str
    requests: int
    failures: list[str]


@dataclass
class Traffic:
    """Two threads sending HTTPS requests through nginx, each on a new connection."""

    port: int
    context: ssl.SSLContext
    phases: list[Phase] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    _sent: int = 0
    _failures: list[str] = field(default_factory=list)
    _mark: tuple[int, int] = (0, 0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request on its own connection: (status, JSON body)."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=10
        )
        try:
            headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
            connection.request(method, path, None if body is None else json.dumps(body), headers)
            response = connection.getresponse()
            raw = response.read()
            if response.getheader("Content-Type", "").startswith("application/json"):
                return response.status, json.loads(raw)
            return response.status, raw.decode(errors="replace")
        finally:
            connection.close()

    def _send(self, kind: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._sent >= MAX_REQUESTS:
                    return
                self._sent += 1
                number = self._sent
            try:
                if number % 10 == 0:
                    path = WRITES[number // 10 % len(WRITES)]
                    fields = {"content": "x"} | (
                        {"title": f"load {number}"} if path == "/documents" else {}
                    )
                    status, body = self.call("POST", path, fields)
                    if status == 201:
                        self.created.append(f"{path}/{body['id']}")
                else:
                    status, _ = self.call("GET", READS[number % len(READS)] if kind else "/version")
                if status not in (200, 201):
                    self._failures.append(f"request {number}: HTTP {status}")
            except (OSError, http.client.HTTPException) as error:
                self._failures.append(f"request {number}: {error!r}")
            time.sleep(PAUSE)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._send, args=(kind,), daemon=True) for kind in (0, 1)
        ]
        for thread in self._threads:
            thread.start()

    def end_phase(self, name: str) -> Phase:
        """Close the current phase and report its counts."""
        with self._lock:
            sent, failed = self._sent, len(self._failures)
        phase = Phase(name, sent - self._mark[0], self._failures[self._mark[1] : failed])
        self._mark = (sent, failed)
        self.phases.append(phase)
        print(
            f"  {name}: {phase.requests} requests, {len(phase.failures)} failed",
            *phase.failures[:5],
        )
        return phase

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: label matchers, groupings, ranges, function
    calls and keywords left out."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)|\bbool\b", " ", expression)
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made for this test."""
    key, cert = directory / "privkey.pem", directory / "fullchain.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def install_certificate(
    client: docker.DockerClient, project: str, key: Path, cert: Path, image: str
) -> None:
    """Put the certificate where certbot would, in the stack's letsencrypt volume."""
    labels = {"com.docker.compose.project": project, "com.docker.compose.volume": "letsencrypt"}
    client.volumes.create(f"{project}_letsencrypt", labels=labels)
    archive = BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in (key, cert):
            tar.add(path, arcname=f"live/api/{path.name}")
    helper = client.containers.create(
        image, "true", volumes={f"{project}_letsencrypt": {"bind": "/etc/letsencrypt"}}
    )
    try:
        helper.put_archive("/etc/letsencrypt", archive.getvalue())
    finally:
        helper.remove(force=True)


def releases(project: Path, directory: Path) -> dict[str, Path]:
    """The project at v1, and copies of it at v2 (adds a column), v3, and v4 (never healthy)."""

    def copy(source: Path, version: str) -> Path:
        destination = directory / version
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".nox", "__pycache__"))
        return destination

    v2 = copy(project, "v2")
    (v2 / "src/my_service/migrations/versions/0002_summary.py").write_text(EXPAND)
    # v2's code reads the new column: it fails on the v1 schema, so it must run after migrating.
    edit(
        v2 / "src/my_service/models.py",
        "    content: Mapped[str] = mapped_column(Text)\n",
        "    content: Mapped[str] = mapped_column(Text)\n"
        "    summary: Mapped[str | None] = mapped_column(Text, default=None)\n",
    )
    v3 = copy(v2, "v3")
    v4 = copy(v3, "v4")
    edit(
        v4 / "src/my_service/web.py",
        '        return Health(status="ok")',
        '        raise RuntimeError("this release is broken")',
    )
    for version, path in (("0.2.0", v2), ("0.3.0", v3), ("0.4.0", v4)):
        edit(path / "pyproject.toml", 'version = "0.1.0"', f'version = "{version}"')
        subprocess.run(["uv", "lock", "--quiet"], cwd=path, check=True)
    return {"v1": project, "v2": v2, "v3": v3, "v4": v4}


def kill_points(output: str) -> list[int]:
    """Where to kill a deploy (before its Nth command): as each step starts, and before every
    command of the switch to the new colour and of what follows it."""
    points, count, switching, step_started = [], 0, False, False
    for line in output.splitlines():
        if re.match(r"\[\d+\] ", line):
            step_started = True
            switching = switching or "Send traffic" in line
        elif line.startswith("    $ "):
            count += 1
            if step_started or switching:
                points.append(count)
            step_started = False
    return points


@dataclass
class Stack:
    """The vm variant's compose project on this machine, released by its own engine."""

    project: Path
    directory: Path
    env: dict[str, str]
    traffic: Traffic
    results: list[dict[str, Any]] = field(default_factory=list)

    def start(self, action: str, *args: str) -> subprocess.Popen[str]:
        """Start the engine `nox -s deploy|rollback -- production ARGS` runs, in its own group."""
        return subprocess.Popen(
            [sys.executable, "-m", "scripts.deploy", action, "production", *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def release(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a deploy or rollback to the end."""
        process = self.start(action, *args)
        output, _ = process.communicate(timeout=600)
        print(output[-2500:])
        return subprocess.CompletedProcess(process.args, process.returncode, output, "")

    def killed(self, action: str, *args: str, before_command: int) -> str:
        """Run a release and kill it, with everything it started, as it starts a command."""
        print(f"  killing {action} {' '.join(args)} before command {before_command}")
        process = self.start(action, *args)
        assert process.stdout is not None
        seen, output = 0, []
        for line in process.stdout:
            output.append(line)
            if line.startswith("    $ "):
                seen += 1
                if seen == before_command:
                    os.killpg(process.pid, signal.SIGKILL)
                    break
        process.wait(timeout=60)
        process.stdout.close()
        assert seen == before_command, "".join(output)
        return "".join(output)

    def serving(self) -> str:
        """The release label the API reports through nginx, once every service reports it too."""
        status, body = self.traffic.call("GET", "/version")
        assert status == 200, body
        labels = {"api": body["image_tag"]}
        for service in VARIANT.services:
            status, body = self.traffic.call("GET", f"/{service}/hello")
            assert status == 200, body
            labels[service] = body["release"]
        assert len(set(labels.values())) == 1, f"the components serve different releases: {labels}"
        return str(labels["api"])

    def history(self) -> list[dict[str, Any]]:
        lines = (self.directory / "releases.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def phase(self, scenario: str) -> Phase:
        phase = self.traffic.end_phase(scenario)
        self.results.append(
            {"scenario": scenario, "requests": phase.requests, "failed": len(phase.failures)}
        )
        return phase


def test_releases_under_load(render: Render, tmp_path: Path) -> None:
    project = render(VARIANT)
    client = docker.from_env()
    versions = releases(project, tmp_path)
    for version, source in versions.items():
        built = build(
            source,
            f"{REPOSITORY}:{version}",
            python_version="3.12",
            build_args={"IMAGE_TAG": version},
        )
        print(f"built {REPOSITORY}:{version} in {built.seconds}s ({built.size_mb} MB)")

    name = f"slipway-e2e-{secrets.token_hex(3)}"
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / ".env").write_text(
        f"ENVIRONMENT=production\nAPI_KEY={API_KEY}\nPOSTGRES_PASSWORD={secrets.token_hex(16)}\n"
        "LOG_LEVEL=WARNING\n"
    )
    key, cert = certificate(tmp_path)
    https_port = free_port()
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    compose_binary = shutil.which("docker-compose")
    assert compose_binary, "docker-compose (the validate group) is needed for the end-to-end test"
    (plugins / "docker-compose").symlink_to(compose_binary)
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "VM_HOST": "local",
        "VM_DIR": str(host_dir),
        "VM_IMAGE": REPOSITORY,
        "VM_DRAIN_SECONDS": "3",
        "COMPOSE_PROJECT_NAME": name,
        "HTTP_PORT": f"127.0.0.1:{free_port()}",
        "HTTPS_PORT": f"127.0.0.1:{https_port}",
        "PROMETHEUS_PORT": str(free_port()),
        "ALERTMANAGER_PORT": str(free_port()),
        "NGINX_IMAGE": base_image("NGINX_IMAGE", project / "deploy/vm"),
        "POSTGRES_IMAGE": base_image("POSTGRES_IMAGE", project),
        "REDIS_IMAGE": base_image("REDIS_IMAGE", project),
        # The certificate is the test's own; the bootstrap only checks that it exists.
        "CERTBOT_IMAGE": base_image("NGINX_IMAGE", project / "deploy/vm"),
        "DOCKER_CONFIG": str(plugins.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    install_certificate(client, name, key, cert, env["NGINX_IMAGE"])
    stack = Stack(
        project, host_dir, env, Traffic(https_port, ssl.create_default_context(cafile=str(cert)))
    )
    traffic = stack.traffic

    def container(service: str) -> Container:
        [found] = client.containers.list(
            filters={
                "label": [
                    f"com.docker.compose.project={name}",
                    f"com.docker.compose.service={service}",
                ]
            }
        )
        return found

    def worker_image() -> str:
        return str(container("worker").attrs["Config"]["Image"])

    try:
        first = stack.release("deploy", "--version", "v1")
        assert first.returncode == 0, first.stdout[-6000:]
        assert stack.serving() == "v1"
        rows = [
            traffic.call("POST", "/documents", {"title": f"row {n}", "content": "kept"})[1]["id"]
            for n in range(20)
        ]
        traffic.start()
        time.sleep(2)
        assert stack.phase("v1 serving").failures == []

        # Rollback across a migration, and rollbacks that walk back.
        assert stack.release("deploy", "--version", "v2").returncode == 0
        assert stack.serving() == "v2"
        assert stack.phase("deploy v2 (adds a column)").failures == []
        assert stack.release("deploy", "--version", "v3").returncode == 0
        assert stack.serving() == "v3"
        assert stack.phase("deploy v3").failures == []
        for expected in ("v2", "v1"):
            back = stack.release("rollback")
            assert back.returncode == 0, back.stdout[-6000:]
            assert stack.serving() == expected
            assert worker_image() == f"{REPOSITORY}:{expected}"
        # v1 reads and writes under load on the schema v2 left (the load keeps creating rows).
        assert stack.phase("two rollbacks: v3 -> v2 -> v1 (on v2's schema)").failures == []
        third = stack.release("rollback")
        assert third.returncode != 0
        assert "there is no earlier release to roll back to" in third.stdout
        assert stack.serving() == "v1"
        assert stack.phase("third rollback refused").failures == []
        again = stack.release("deploy", "--version", "v3")
        assert again.returncode == 0, again.stdout[-6000:]
        assert stack.serving() == "v3"
        assert stack.phase("deploy v3 on the migrated schema").failures == []

        # A release whose API never becomes healthy: the worker goes back, v3 serves everywhere.
        broken = stack.release("deploy", "--version", "v4")
        assert broken.returncode != 0
        assert "v3 serves as before" in broken.stdout
        assert stack.serving() == "v3"
        assert worker_image() == f"{REPOSITORY}:v3"
        assert stack.history()[-1]["version"] == "v3"
        assert (
            stack.phase("deploy v4, never healthy: worker put back, v3 everywhere").failures == []
        )

        # Two deploys at once: the second refuses, naming the first; the first completes.
        first_deploy = stack.start("deploy", "--version", "v2")
        assert first_deploy.stdout is not None
        for line in first_deploy.stdout:
            if line.startswith("[2]"):
                break
        second = stack.release("deploy", "--version", "v1")
        assert second.returncode != 0
        assert "production is being released by" in second.stdout
        assert f"(pid {first_deploy.pid}), deploy of v2" in second.stdout
        rest, _ = first_deploy.communicate(timeout=600)
        assert first_deploy.returncode == 0, rest[-6000:]
        assert stack.serving() == "v2"
        assert stack.phase("two deploys at once: one refused, one released").failures == []

        # A deploy killed at each of its steps, and between the commands that switch traffic,
        # then run again.
        rehearsal = stack.release("deploy", "--version", "v3")
        assert rehearsal.returncode == 0
        assert stack.phase("deploy v3").failures == []
        version = "v2"
        points = kill_points(rehearsal.stdout)
        for nth in points:
            stack.killed("deploy", "--version", version, before_command=nth)
            again = stack.release("deploy", "--version", version)
            assert again.returncode == 0, f"killed before command {nth}:\n{again.stdout[-6000:]}"
            assert stack.serving() == version, f"killed before command {nth}"
            assert stack.history()[-1]["version"] == version
            version = "v3" if version == "v2" else "v2"
        scenario = f"deploys killed at {len(points)} points (commands {points}), then run again"
        assert stack.phase(scenario).failures == []
        traffic.stop()

        stored: set[str] = set()
        while True:
            status, page = traffic.call("GET", f"/documents?limit=100&offset={len(stored)}")
            assert status == 200, page
            stored |= {item["id"] for item in page["items"]}
            if len(stored) >= page["total"]:
                break
            time.sleep(PAUSE)
        documents = {
            path.rpartition("/")[2] for path in traffic.created if path.startswith("/documents/")
        }
        assert {*rows, *documents} <= stored
        items = [path for path in traffic.created if not path.startswith("/documents/")]
        assert items, "no service item was written under load"
        for path in items:  # each service's rows are in its table, whatever the release
            status, item = traffic.call("GET", path)
            assert status == 200, (path, item)
            time.sleep(PAUSE / 2)  # within nginx's rate limit for one client (20 per second)
        print(
            f"  rows intact: {len(rows)} documents created before, {len(documents)} under load; "
            f"{len(items)} service items under load"
        )

        # A crash of the live slot: its process dies (as on a fatal error or the OOM killer) and
        # Docker's restart policy brings it back. `docker kill` would not do: Docker counts it
        # as a manual stop, which restart policies respect (moby/moby#21359).
        live = next(
            c
            for c in client.containers.list(filters={"label": f"com.docker.compose.project={name}"})
            if c.labels["com.docker.compose.service"].startswith("api-")
        )
        os.kill(live.attrs["State"]["Pid"], signal.SIGKILL)
        started = time.monotonic()
        eventually(lambda: traffic.call("GET", "/health/ready")[0] == 200, timeout=30, interval=0.5)
        print(f"  {live.name} crashed: serving again after {time.monotonic() - started:.1f}s")

        # Backups. One on demand, with every row written so far.
        started = time.monotonic()
        taken = stack.release("backup")
        dumped = time.monotonic() - started
        assert taken.returncode == 0, taken.stdout[-6000:]
        [(size, backup)] = re.findall(r"\((\d+) bytes\): (manual/\S+\.dump)", taken.stdout)
        listed = stack.release("backup", "--list")
        assert re.search(rf"^{re.escape(backup)}\t{size}\t", listed.stdout, re.MULTILINE)
        assert re.search(r"^daily/my_service-\S+\.dump\t", listed.stdout, re.MULTILINE)
        # A drill: the newest backup restored beside the live database, compared table by table.
        started = time.monotonic()
        drill = stack.release("restore", "latest", "--drill")
        drilled = time.monotonic() - started
        assert drill.returncode == 0, drill.stdout[-6000:]
        assert "drill passed" in drill.stdout
        counts = {  # table: (live, restored)
            fields[0]: tuple(fields[1:])
            for fields in map(str.split, drill.stdout.splitlines())
            if len(fields) == 3 and fields[0].startswith(("public.", "alembic_version"))
        }
        assert counts["public.documents"] == (str(len(stored)), str(len(stored))), counts
        # The schema is the newest any release migrated to: v2's, which v3 keeps.
        migrations = versions["v3"] / "src/my_service/migrations/versions"
        newest = max(path.name.split("_")[0] for path in migrations.glob("0*.py"))
        assert counts["alembic_version"] == (newest, newest)
        # A restore replaces the database: rows written after the backup are gone, the service
        # reads and writes again once its pools reconnect.
        for n in range(3):
            late = {"title": f"late {n}", "content": "written after the backup"}
            assert traffic.call("POST", "/documents", late)[0] == 201
        started = time.monotonic()
        restored = stack.release("restore", backup)
        restoring = time.monotonic() - started
        assert restored.returncode == 0, restored.stdout[-6000:]
        assert "the database it replaced is my_service_before_restore_" in restored.stdout

        def total() -> Any:
            status, page = traffic.call("GET", "/documents?limit=1")
            return status == 200 and page["total"]

        assert eventually(lambda: total() == len(stored), timeout=30)
        assert traffic.call("POST", "/documents", {"title": "after", "content": "x"})[0] == 201
        # The worker runs a job on the restored database too.
        status, job = traffic.call("POST", f"/documents/{rows[0]}/analysis")
        assert status == 202, job

        def job_status() -> Any:
            status, answer = traffic.call("GET", f"/jobs/{job['id']}")
            return status == 200 and answer["status"]

        assert eventually(lambda: job_status() == "complete", timeout=30)
        print(
            f"  backups: {int(size) / 1e6:.1f} MB dump of {len(stored)} rows in {dumped:.1f}s, "
            f"drill in {drilled:.1f}s, restore in {restoring:.1f}s (through `nox -s ...`)"
        )

        # Monitoring: Prometheus scrapes each component of the serving colour under its job, the
        # exporters and the backup service's figures, and has every metric the alert rules read.
        prometheus = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}/api/v1/"

        def scraped(expression: str) -> dict[str, float]:
            query = prometheus + "query?query=" + urllib.parse.quote(expression)
            status, answer = containers.http("GET", query)
            assert status == 200, answer
            return {r["metric"]["job"]: float(r["value"][1]) for r in answer["data"]["result"]}

        components = {"api", "worker", *VARIANT.services}
        jobs = {*components, "postgres-exporter", "redis-exporter", "alertmanager", "prometheus"}
        jobs |= {"host"}
        eventually(lambda: scraped("up") == dict.fromkeys(jobs, 1.0), timeout=90, interval=2)
        # The scheduled backup ran as the stack started.
        assert scraped('backup_last_success_timestamp_seconds{kind="daily"}')["host"] > 0
        assert scraped("backup_last_run_success") == {"host": 1.0}
        end = subprocess.run(
            ["openssl", "x509", "-enddate", "-noout", "-in", str(cert)],
            capture_output=True,
            text=True,
            check=True,
        )
        expiry = ssl.cert_time_to_seconds(end.stdout.strip().removeprefix("notAfter="))
        assert scraped("tls_certificate_expiry_timestamp_seconds") == {"host": float(expiry)}
        alerting = yaml.safe_load((host_dir / "monitoring" / "alerts.yml").read_text())
        read = {
            name
            for group in alerting["groups"]
            for rule in group["rules"]
            for name in metric_names(rule["expr"])
        }

        def unknown() -> set[str]:
            status, answer = containers.http("GET", prometheus + "label/__name__/values")
            assert status == 200, answer
            return read - set(answer["data"])

        for _ in range(30):  # the worker's job counter appears at its next scrape
            if not (missing := unknown()):
                break
            time.sleep(2)
        assert not missing, sorted(missing)
        # The API's connection pool, and that of each service that owns tables.
        pools = dict.fromkeys(["api", *VARIANT.service_tables], 5.0)
        assert scraped("db_pool_connections_max") == pools
        assert set(scraped("app_build_info")) == components
        assert set(scraped('queue_jobs{state="queued"}')) == {"worker"}
        # The exporter's connection, ended by the restore, is back by its next scrape.
        eventually(lambda: scraped("pg_up") == {"postgres-exporter": 1.0}, timeout=60, interval=2)
        assert scraped("redis_memory_max_bytes") == {"redis-exporter": 256 * 2**20}
        print(f"  Prometheus scrapes {', '.join(sorted(jobs))}")

        # Injected 5xx: PostgreSQL stops, and document reads answer 503. The rule's `for:` is
        # shortened here to 30s: promtool's tests (monitoring/alerts.test.yml) check its timing,
        # this its expression against the real metrics, and the way to Alertmanager.
        rules = host_dir / "monitoring" / "alerts.yml"
        rules.write_text(re.sub(r"for: \d+m", "for: 30s", rules.read_text()))
        container("prometheus").kill(signal="SIGHUP")
        postgres = container("postgres")
        postgres.stop(timeout=10)
        alertmanager = f"http://127.0.0.1:{env['ALERTMANAGER_PORT']}/api/v2/alerts"
        started = time.monotonic()

        def error_rate_alert() -> bool:
            for _ in range(10):
                assert traffic.call("GET", "/documents")[0] == 503
            _, alerts = containers.http("GET", alertmanager)
            return any(
                alert["labels"] | {"alertname": "HTTPErrorRate", "job": "api"} == alert["labels"]
                and alert["labels"]["severity"] == "critical"
                for alert in alerts
            )

        eventually(error_rate_alert, timeout=240, interval=1)
        print(
            f"  5xx injected: HTTPErrorRate in Alertmanager after {time.monotonic() - started:.0f}s"
        )
        postgres.start()
    finally:
        traffic.stop()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(stack.results, indent=2) + "\n")
        subprocess.run(
            [
                "docker",
                "compose",
                "--project-name",
                name,
                "--project-directory",
                str(host_dir),
                "-f",
                str(host_dir / "compose.yaml"),
                "down",
                "--volumes",
                "--timeout",
                "1",
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        for volume in client.volumes.list(filters={"label": f"com.docker.compose.project={name}"}):
            volume.remove(force=True)
        for version in versions:
            client.images.remove(f"{REPOSITORY}:{version}", force=True)
    assert [r for r in stack.results if r["failed"]] == []
