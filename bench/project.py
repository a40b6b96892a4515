"""A project rendered from the template: the copier CLI, and what the project says about itself."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from . import BenchError
from .context import check_output

ROOT = Path(__file__).resolve().parents[1]
# The tools of the session's virtualenv (the `bench` group).
BIN = Path(sys.executable).parent
# The naive app runs in the project's virtualenv, with this driver added.
BASELINE_DRIVER = "psycopg[binary]>=3.2"


def copier_copy(
    source: Path, dst: Path, *options: str, data: Mapping[str, Any] | None = None
) -> float:
    """Render `source` into `dst` with the copier CLI, as a user does: the seconds it took."""
    answers = [f"--data={key}={value}" for key, value in (data or {}).items()]
    command = [BIN / "copier", "copy", "--quiet", "--defaults", "--trust", "--vcs-ref=HEAD"]
    started = time.perf_counter()
    check_output([*command, *options, *answers, source, dst], timeout=300)
    return time.perf_counter() - started


def count_files(root: Path) -> int:
    """Files under `root`, leaving out version control data."""
    return sum(1 for path in root.rglob("*") if path.is_file() and ".git" not in path.parts)


@dataclass(frozen=True)
class Project:
    """A rendered project, read from its pyproject.toml."""

    path: Path

    @cached_property
    def pyproject(self) -> dict[str, Any]:
        """The parsed pyproject.toml."""
        return tomllib.loads((self.path / "pyproject.toml").read_text())

    @property
    def slug(self) -> str:
        """The command the project installs (`my-service`)."""
        return next(iter(self.pyproject["project"]["scripts"]))

    @property
    def package(self) -> str:
        """The import name of the package under src/."""
        return str(self.pyproject["project"]["scripts"][self.slug]).split(".")[0]

    @property
    def python(self) -> str:
        """The Python version the project runs on (the first in requires-python)."""
        requires = self.pyproject["project"]["requires-python"]
        if not (found := re.search(r"\d+\.\d+", requires)):
            msg = f"the project's requires-python ({requires}) names no Python version"
            raise BenchError(msg)
        return found[0]

    @cached_property
    def answers(self) -> dict[str, Any]:
        """The answers it was rendered with (.copier-answers.yml)."""
        return dict(yaml.safe_load((self.path / ".copier-answers.yml").read_text()))

    def command(self, *args: str) -> list[str | Path]:
        """The project's own command line (`my-service ARGS`), from its virtualenv."""
        return [self.bin(self.slug), *args]

    def bin(self, name: str) -> Path:
        """A command of the project's virtualenv."""
        return self.path / ".venv" / "bin" / name

    def install(self) -> None:
        """The locked runtime dependencies (no dev group) and the naive app's driver."""
        uv = BIN / "uv" if (BIN / "uv").exists() else shutil.which("uv") or "uv"
        # uv finds the interpreter as the caller would (pyenv and all), but never downloads one;
        # nox points VIRTUAL_ENV and UV_PROJECT_ENVIRONMENT at the session's virtualenv.
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env |= {"UV_PROJECT_ENVIRONMENT": str(self.path / ".venv"), "VIRTUAL_ENV": ""}
        check_output(
            [uv, "sync", "--locked", "--no-dev", f"--python={self.python}"],
            cwd=self.path,
            env=env,
            timeout=600,
        )
        check_output(
            [uv, "pip", "install", f"--python={self.bin('python')}", BASELINE_DRIVER],
            cwd=self.path,
            env=env,
            timeout=600,
        )
