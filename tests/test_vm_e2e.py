"""Slow tier: the single-VM stack end to end, on this machine's Docker engine, under load.

Builds v1, v2 (a new version) and a broken v3 of the vm variant, releases them with the project's
own `nox -s deploy -- production` (VM_HOST=local) while two threads send HTTPS requests through
nginx on loopback, and asserts that no request fails through a switch, a failed release and a
rollback. Requests are bounded in number and rate, and go to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
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
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import docker
import pytest

from .conftest import Render
from .containers import base_image, build, eventually
from .matrix import full_variant
from .test_update import edit

pytestmark = pytest.mark.e2e

API_KEY = secrets.token_hex(32)
REPOSITORY = "slipway-e2e/my-service"
MAX_REQUESTS = 40_000
# Below the per-client rate limit of deploy/vm/nginx/api.conf (20 requests a second).
PAUSE = 0.125  # seconds between requests, per thread


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
                    status, body = self.call(
                        "POST", "/documents", {"title": f"load {number}", "content": "x"}
                    )
                    if status == 201:
                        self.created.append(body["id"])
                else:
                    status, _ = self.call("GET", "/health/ready" if kind else "/version")
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


def variant_of(project: Path, destination: Path, change: str) -> Path:
    """A copy of the project with one change: "v2" (a new version) or "v3" (a broken liveness)."""
    shutil.copytree(project, destination, ignore=shutil.ignore_patterns(".nox", "__pycache__"))
    if change == "v2":
        edit(destination / "pyproject.toml", 'version = "0.1.0"', 'version = "0.2.0"')
        subprocess.run(["uv", "lock", "--quiet"], cwd=destination, check=True)
    else:
        edit(
            destination / "src/my_service/api/health.py",
            '    return Health(status="ok")',
            '    raise RuntimeError("this release is broken")',
        )
    return destination


def test_blue_green_releases_under_load(render: Render, tmp_path: Path) -> None:
    project = render(full_variant("vm"))
    client = docker.from_env()
    versions = {
        "v1": project,
        "v2": variant_of(project, tmp_path / "v2", "v2"),
        "v3": variant_of(project, tmp_path / "v3", "v3"),
    }
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
        "NGINX_IMAGE": base_image("NGINX_IMAGE", project / "deploy/vm"),
        "POSTGRES_IMAGE": base_image("POSTGRES_IMAGE", project),
        "REDIS_IMAGE": base_image("REDIS_IMAGE", project),
        # The certificate is the test's own; the bootstrap only checks that it exists.
        "CERTBOT_IMAGE": base_image("NGINX_IMAGE", project / "deploy/vm"),
        "DOCKER_CONFIG": str(plugins.parent),
    }
    install_certificate(client, name, key, cert, env["NGINX_IMAGE"])
    traffic = Traffic(https_port, ssl.create_default_context(cafile=str(cert)))

    def release(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "nox", "-s", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        print(result.stdout[-3000:])
        return result

    def live_version() -> str:
        return traffic.call("GET", "/version")[1]["version"]

    try:
        first = release("deploy", "--", "production", "--version", "v1")
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
        assert live_version() == "0.1.0"
        rows = [
            traffic.call("POST", "/documents", {"title": f"row {n}", "content": "kept"})[1]["id"]
            for n in range(20)
        ]

        traffic.start()
        time.sleep(2)
        traffic.end_phase("v1 serving")

        second = release("deploy", "--", "production", "--version", "v2")
        assert second.returncode == 0, second.stdout[-6000:]
        assert live_version() == "0.2.0"
        assert traffic.end_phase("deploy v2 (blue-green switch)").failures == []

        broken = release("deploy", "--", "production", "--version", "v3")
        assert broken.returncode != 0
        assert live_version() == "0.2.0"
        assert traffic.end_phase("deploy v3 (never healthy: refused)").failures == []

        back = release("rollback", "--", "production")
        assert back.returncode == 0, back.stdout[-6000:]
        assert live_version() == "0.1.0"
        assert traffic.end_phase("rollback to v1").failures == []
        traffic.stop()

        stored: set[str] = set()
        while True:
            status, page = traffic.call("GET", f"/documents?limit=100&offset={len(stored)}")
            assert status == 200, page
            stored |= {item["id"] for item in page["items"]}
            if len(stored) >= page["total"]:
                break
            time.sleep(PAUSE)
        assert {*rows, *traffic.created} <= stored
        print(f"  rows intact: {len(rows)} created before, {len(traffic.created)} under load")

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
    finally:
        traffic.stop()
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
