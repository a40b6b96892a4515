"""Running a project's `nox -s deploy` and `nox -s rollback` from tests, without credentials."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Dry runs and prerequisite checks must not depend on the caller's credentials or CLIs.
BARE_ENV = {
    "PATH": os.pathsep.join(sorted({str(Path(sys.executable).parent), "/usr/bin", "/bin"})),
    "HOME": os.environ.get("HOME", "/root"),
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",  # leave the rendered project as rendered
    "TMPDIR": tempfile.gettempdir(),  # where the tests look for the files a plan names
}


def nox(
    project: Path, session: str, *posargs: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one of the project's nox sessions with `posargs`, in a bare environment."""
    return subprocess.run(
        [sys.executable, "-m", "nox", "-s", session, "--", *posargs],
        cwd=project,
        env={**BARE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def dry_run(project: Path, session: str, *posargs: str) -> str:
    """The plan a dry run prints; fails the test if the dry run fails."""
    result = nox(project, session, *posargs, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def commands(plan: str) -> list[str]:
    """The commands a plan would run, in order."""
    return [line.strip()[2:] for line in plan.splitlines() if line.strip().startswith("$ ")]


def requests(plan: str) -> list[str]:
    """The HTTP requests a plan would send (method and URL), in order."""
    methods = ("GET ", "POST ", "PUT ", "PATCH ", "DELETE ")
    return [line.strip() for line in plan.splitlines() if line.strip().startswith(methods)]
