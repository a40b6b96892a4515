"""The Docker objects a benchmark run creates, all named `slipway-bench-…`, all removed on exit.

Other work may use the same engine at the same time: only what this run created is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.models.containers import Container
from docker.models.networks import Network

from . import BenchError

PREFIX = "slipway-bench"
LABEL = "dev.slipway.bench"


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docker_cli() -> str:
    """The docker client that builds with BuildKit: $DOCKER, else the one on PATH."""
    cli = os.environ.get("DOCKER") or shutil.which("docker")
    if not cli:
        msg = "no docker client found: install Docker, or set DOCKER to a client that has BuildKit"
        raise BenchError(msg)
    return cli


@dataclass
class Lab:
    """A private network, and the containers and image tags this run made."""

    client: docker.DockerClient
    name: str
    network: Network
    containers: list[Container] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def create(self, image: str, name: str, **options: Any) -> Container:
        """A container on the lab's network, created but not started: `<lab>-<name>`."""
        container = self.client.containers.create(
            image, name=f"{self.name}-{name}", network=self.network.name, labels=[LABEL], **options
        )
        self.containers.append(container)
        return container

    def start(self, image: str, name: str, **options: Any) -> Container:
        """A container on the lab's network, started."""
        container = self.create(image, name, **options)
        container.start()
        return container

    def once(self, image: str, name: str, command: list[str], **options: Any) -> str:
        """Run a command in a container to completion: its output."""
        container = self.start(image, name, command=command, **options)
        try:
            status = container.wait(timeout=120)
            output = container.logs().decode(errors="replace")
        except requests.exceptions.RequestException:
            msg = f"{' '.join(command)} in {image} did not finish within 120 s"
            raise BenchError(msg) from None
        finally:
            self.remove(container)
        if status["StatusCode"] != 0:
            msg = f"{' '.join(command)} exited {status['StatusCode']} in {image}:\n{output}"
            raise BenchError(msg)
        return output

    def remove(self, container: Container) -> None:
        """Remove a container now rather than on exit."""
        with suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
        self.containers.remove(container)

    def forget_image(self, tag: str) -> None:
        """Remove an image tag this run built."""
        with suppress(docker.errors.ImageNotFound):
            self.client.images.remove(tag, force=True)
        if tag in self.images:
            self.images.remove(tag)

    def close(self) -> None:
        """Remove every container, the network and every image tag."""
        for container in list(self.containers):
            self.remove(container)
        with suppress(docker.errors.NotFound):
            self.network.remove()
        for tag in list(self.images):
            self.forget_image(tag)


@contextmanager
def lab() -> Iterator[Lab]:
    """A lab that is removed on exit, whether the run succeeded or not."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        msg = f"no Docker engine answers ({error}): start one, or set DOCKER_HOST"
        raise BenchError(msg) from None
    name = f"{PREFIX}-{uuid.uuid4().hex[:6]}"
    network = client.networks.create(name, labels={LABEL: ""})
    current = Lab(client, name, network)
    try:
        yield current
    finally:
        current.close()
