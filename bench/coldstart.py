"""Cold start: from starting the service (a container, a process) to its first /health 200."""

from __future__ import annotations

import time

from .client import wait_for_200
from .context import BASE_ENV, Run, start
from .image import ImageBench
from .lab import Lab, free_port
from .service import HEALTH_PATH, ServiceBench, slipway_settings

POLL_SECONDS = 0.02
TIMEOUT = 60

METHOD = [
    "**cold start**: the latest image's container is created first, then timed from `start` to "
    f"the first 200 of `{HEALTH_PATH}` through its published port, polled every "
    f"{POLL_SECONDS * 1000:.0f} ms; the process figure times the project virtualenv's own "
    "`serve` command the same way, outside Docker. Both run against the bench's PostgreSQL and "
    "Redis with the service's settings.",
]


class ColdStartBench:
    """Times the service's start, in the image built this round and as a local process."""

    method = METHOD

    def __init__(self, run: Run, lab: Lab, service: ServiceBench, image: ImageBench) -> None:
        self.run, self.lab, self.service, self.image = run, lab, service, image

    def setup(self) -> None:
        """Nothing: the service and the image benches prepare what this one starts."""

    def round(self) -> None:
        """One container start and one process start."""
        self.run.record("cold_start.container", self.container(), "s")
        self.run.record("cold_start.process", self.process(), "s")

    def container(self) -> float:
        """Seconds from starting the image's container to its first 200."""
        assert self.image.latest, "the image bench builds an image every round, before this one"
        image = self.lab.client.images.get(self.image.latest)
        exposed = next(iter(image.attrs["Config"]["ExposedPorts"]))  # "8000/tcp": the contract
        port = free_port()
        settings = slipway_settings(self.service.api_key, self.service.backing, in_lab=True)
        container = self.lab.create(
            self.image.latest,
            f"cold-start-{self.run.round}",
            environment=settings,
            ports={exposed: ("127.0.0.1", port)},
        )
        try:
            started = time.perf_counter()
            container.start()
            wait_for_200(
                f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=TIMEOUT, interval=POLL_SECONDS
            )
            return time.perf_counter() - started
        finally:
            self.lab.remove(container)

    def process(self) -> float:
        """Seconds from starting the project's `serve` command to its first 200."""
        project, port = self.service.project, free_port()
        env = {**BASE_ENV, **self.service.settings, "HOST": "127.0.0.1", "PORT": str(port)}
        env["METRICS_PORT"] = str(free_port())
        log = self.run.path(f"cold-start-{self.run.round}.log")
        started = time.perf_counter()
        process = start(
            "serve", [project.bin(project.slug), "serve"], env=env, cwd=project.path, log=log
        )
        try:
            wait_for_200(
                f"http://127.0.0.1:{port}{HEALTH_PATH}",
                timeout=TIMEOUT,
                interval=POLL_SECONDS,
                failed=process.failed,
            )
            return time.perf_counter() - started
        finally:
            process.stop()
