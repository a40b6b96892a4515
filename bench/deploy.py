"""Deploy dry runs: each deploy target's `nox -s deploy -- staging --dry-run`, with nox only."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from tests.matrix import DEFAULT, TARGETS

from . import BenchError
from .context import Run, check_output
from .project import BIN, ROOT, copier_copy

VERSION = "v0.0.0-bench"
# Nothing but nox and the system's tools: a dry run must need no platform CLI or credential.
BARE_PATH = f"{BIN}:/usr/bin:/bin"

METHOD = [
    "**deploy dry-run**: one project per deploy target (every topology of `copier.yml`, the "
    "default features), rendered with `--skip-tasks`; each round times `nox -s deploy -- "
    f"staging --dry-run --version {VERSION}` in it, with only nox and the system's tools on PATH.",
]


class DeployBench:
    """Times every deploy target's dry run."""

    method = METHOD

    def __init__(self, run: Run) -> None:
        self.run = run
        self.projects: dict[str, Path] = {}

    def setup(self) -> None:
        """Render one project per deploy target."""
        for topology, platform in TARGETS:
            variant = replace(DEFAULT, topology=topology, serverless_platform=platform)
            path = self.run.path("deploy", variant.deploy_target)
            copier_copy(ROOT, path, "--skip-tasks", data=variant.answers)
            self.projects[variant.deploy_target] = path
        self.run.say(f"rendered a project for each deploy target: {', '.join(self.projects)}")

    def round(self) -> None:
        """One dry run per target."""
        for target, path in self.projects.items():
            self.run.record(f"deploy.{target}.dry_run", self.dry_run(path), "s")

    @staticmethod
    def dry_run(project: Path) -> float:
        """Seconds the dry run took; it must plan the whole release."""
        command = [BIN / "nox", "-s", "deploy", "--", "staging", "--dry-run", "--version", VERSION]
        env = {"PATH": BARE_PATH, "HOME": str(Path.home()), "LANG": "C.UTF-8"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        started = time.perf_counter()
        output = check_output(command, cwd=project, env=env, timeout=120)
        seconds = time.perf_counter() - started
        if "deploy of staging planned." not in output:
            msg = f"the dry run in {project} planned no whole release:\n{output[-2000:]}"
            raise BenchError(msg)
        return seconds
