"""Docker for the template's tests: images built with the CLI (BuildKit), containers run with the
SDK, and everything a test creates removed afterwards, with the containers' logs printed on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container
from docker.models.networks import Network

LABEL = "dev.slipway.test"  # on everything the tests create, for cleanup


def base_image(variable: str, project: Path) -> str:
    """The image for `variable`: from the environment (CI's local stand-ins, see .ci/run), else the
    official default the project's compose.yaml names."""
    if value := os.environ.get(variable):
        return value
    compose = (project / "compose.yaml").read_text()
    match = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", compose)
    assert match, f"compose.yaml names no default for {variable}"
    return match.group(1)


# Prometheus's tools, from its image (CI: a local stand-in); the official one elsewhere.
PROMETHEUS_IMAGE = os.environ.get("PROMETHEUS_IMAGE") or "prom/prometheus:v3.5.0"
ALERTMANAGER_IMAGE = os.environ.get("ALERTMANAGER_IMAGE") or "prom/alertmanager:v0.28.1"


def run_tool(image: str, entrypoint: str, *args: str, mounts: dict[Path, str]) -> str:
    """Run a tool from an image, with `mounts` (host path: container path) read-only: its output,
    or the test fails with its errors."""
    volumes = {str(host): {"bind": inside, "mode": "ro"} for host, inside in mounts.items()}
    try:
        output = docker.from_env().containers.run(
            image, list(args), entrypoint=entrypoint, volumes=volumes, remove=True, stderr=True
        )
    except docker.errors.ContainerError as error:
        raise AssertionError(f"{entrypoint} {' '.join(args)}: {error.stderr!r}") from None
    return bytes(output).decode()


def base_build_args(python_version: str) -> dict[str, str]:
    """Base-image build args set in the environment; unset ones keep the Dockerfile's defaults."""
    names = {
        "PYTHON_IMAGE": f"PYTHON_IMAGE_{python_version.replace('.', '')}",
        "UV_IMAGE": "UV_IMAGE",
    }
    return {arg: os.environ[env] for arg, env in names.items() if os.environ.get(env)}


def docker_cli() -> str:
    """The docker client that builds with BuildKit."""
    cli = os.environ.get("DOCKER") or shutil.which("docker")
    assert cli, "the image tests need a Docker engine and client (see .ci/run)"
    return cli


def context_digest(project: Path) -> str:
    """A digest of what `docker build` sees: the Dockerfile and the files .dockerignore lets in."""
    digest = hashlib.sha256()
    paths = [project / "Dockerfile", project / "pyproject.toml", project / "uv.lock"]
    paths += sorted(
        p for p in (project / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in paths:
        digest.update(path.relative_to(project).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    """An image the tests built, and what it cost."""

    tag: str
    seconds: float
    size_mb: float


def build(project: Path, tag: str, *, python_version: str, build_args: dict[str, str]) -> Built:
    """Build the project's image with BuildKit and the test base images."""
    args = {**base_build_args(python_version), **build_args}
    command = [docker_cli(), "build", "--quiet", "--label", LABEL, "--tag", tag]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, str(project)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"docker build failed:\n{result.stdout}\n{result.stderr}"
    size = docker.from_env().images.get(tag).attrs["Size"]
    return Built(tag=tag, seconds=round(seconds, 1), size_mb=round(size / 1e6, 1))


def record(name: str, entry: dict[str, Any]) -> None:
    """Append a measurement to build/results/<name>.jsonl (read by the benchmarks)."""
    results = Path(__file__).resolve().parents[1] / "build" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with (results / f"{name}.jsonl").open("a") as file:
        file.write(json.dumps(entry) + "\n")


@dataclass
class Lab:
    """A private Docker network and the containers started on it."""

    client: docker.DockerClient
    network: Network
    containers: list[Container] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # tags to remove with the lab

    def run(self, image: str, name: str, **options: Any) -> Container:
        """Start a detached container on the lab's network, reachable by `name`."""
        container = self.client.containers.run(
            image,
            name=f"{self.network.name}-{name}",
            hostname=name,
            network=self.network.name,
            labels=[LABEL],
            detach=True,
            **options,
        )
        self.network.disconnect(container)
        self.network.connect(container, aliases=[name])
        self.containers.append(container)
        return container

    def once(self, image: str, command: list[str], environment: dict[str, str]) -> str:
        """Run a command to completion on the lab's network; fail with its output otherwise."""
        container = self.run(
            image, f"once-{uuid.uuid4().hex[:6]}", command=command, environment=environment
        )
        status = container.wait(timeout=300)
        output = container.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, (
            f"{' '.join(command)} exited {status['StatusCode']}:\n{output}"
        )
        return output

    def logs(self) -> str:
        """Every container's recent logs, for a failing test's report."""
        parts = []
        for container in self.containers:
            try:
                text = container.logs(tail=80).decode(errors="replace")
            except docker.errors.NotFound:
                continue
            parts.append(f"----- {container.name} -----\n{text}")
        return "\n".join(parts)


@contextmanager
def lab(prefix: str) -> Iterator[Lab]:
    """A lab that is removed on exit, with its containers' logs printed if the block failed."""
    client = docker.from_env()
    network = client.networks.create(f"{prefix}-{uuid.uuid4().hex[:6]}", labels={LABEL: ""})
    current = Lab(client, network)
    try:
        yield current
    except BaseException:
        print(current.logs())
        raise
    finally:
        for container in current.containers:
            with suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        network.remove()
        for tag in current.images:
            with suppress(docker.errors.ImageNotFound):
                client.images.remove(tag, force=True)


def wait_healthy(container: Container, timeout: float = 90) -> None:
    """Wait until Docker reports the container's HEALTHCHECK as healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return
        assert state["Status"] in {"created", "running"}, f"{container.name} exited: {state}"
        time.sleep(0.5)
    raise AssertionError(f"{container.name} was not healthy within {timeout}s")


def published_port(container: Container, port: int) -> int:
    """The loopback port Docker published for the container's `port`."""
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """A JSON HTTP call: (status, parsed body or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def eventually(check: Any, timeout: float = 30, interval: float = 0.5) -> Any:
    """Call `check` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except OSError as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")
