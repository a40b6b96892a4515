"""Slipway's own tasks: `nox` runs lint and the fast tier; `nox -t full` is the whole suite (CI)."""

from __future__ import annotations

import os
import shutil

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.12"


def install(session: nox.Session, *groups: str) -> None:
    """Install the locked tooling groups into the session."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *(f"--group={group}" for group in groups),
        f"--python={session.virtualenv.location}",
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


@nox.session(python=PYTHON, tags=["full"])
def lint(session: nox.Session) -> None:
    """Lint the template's own code and check the template's conventions."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tasks/check_template.py")


@nox.session(python=PYTHON, tags=["full"])
def tests(session: nox.Session) -> None:
    """Fast tier: render every variant and check it statically."""
    install(session, "test")
    # Two workers; each variant's tests stay on one worker, which renders it once.
    fast = "not (project or validate or images or update or e2e or scenarios)"
    session.run("pytest", "-n", "2", "--dist", "loadgroup", "-m", fast, *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def scenarios(session: nox.Session) -> None:
    """Release failure scenarios (rollbacks, kills, concurrency) against each platform's fake."""
    install(session, "test")
    session.run("pytest", "-n", "2", "-m", "scenarios", *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def project(session: nox.Session) -> None:
    """Project tier: each service variant's own `nox -s lint tests`; `nox -s dev` without Docker."""
    install(session, "test")
    # -rA: each variant's fuzz and fault figures, printed by the passing tests, reach the log.
    # Two workers; each generated run has its own temporary directory (tests/test_project.py).
    parallel = ["-n", "2", "--dist", "loadgroup"]
    session.run("pytest", "-m", "project", "-rA", *parallel, *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def validate(session: nox.Session) -> None:
    """Check every variant's files with the platforms' own validators (Docker and npm needed)."""
    install(session, "test", "validate")
    session.run("pytest", "-m", "validate", *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def images(session: nox.Session) -> None:
    """Build every distinct image and run it against Postgres and Redis (Docker needed)."""
    install(session, "test")
    session.run("pytest", "-m", "images", *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def update(session: nox.Session) -> None:
    """`copier update` from an older template version, for every deploy target."""
    install(session, "test")
    session.run("pytest", "-m", "update", "-n", "2", *session.posargs)


@nox.session(python=PYTHON, tags=["full"])
def e2e(session: nox.Session) -> None:
    """Release the vm variant blue-green on the local Docker engine, under load."""
    install(session, "test", "validate")
    session.run("pytest", "-m", "e2e", "-s", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: render, service vs a naive app, image, cold start, deploy dry runs (Docker)."""
    install(session, "bench")
    ensure_wrk(session)
    # bench.run --help: an optional scientific-python/cookie checkout (path or URL), --rounds N.
    session.run("python", "-m", "bench.run", *session.posargs)


def ensure_wrk(session: nox.Session) -> None:
    """Install the wrk load generator with apt-get when it is missing, or say how to."""
    if shutil.which("wrk"):
        return
    if not (shutil.which("apt-get") and os.geteuid() == 0):
        session.error("wrk is not installed: `sudo apt-get install wrk` (or `brew install wrk`)")
    session.run("apt-get", "update", "--quiet", external=True)
    session.run("apt-get", "install", "--yes", "--quiet", "wrk", external=True)
