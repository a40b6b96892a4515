"""Project tier: each distinct service passes its own `nox -s lint tests`; `nox -s dev` serves.

The generated tests include a Schemathesis fuzz of the running API against its own OpenAPI
document and a PostgreSQL restart under concurrent writes, so each variant is fuzzed here too:
their figures go to build/results/project.jsonl and the tier's report.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import Render
from .containers import record
from .matrix import (
    CODE_VARIANTS,
    DEFAULT,
    DEPLOY_TARGETS,
    NAMED,
    WITH_SERVICES,
    Variant,
    full_variant,
)

pytestmark = pytest.mark.project

# The generated tests start their own PostgreSQL and Redis unless these name servers.
ISOLATED_ENV = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}


def isolated_env(**extra: str) -> dict[str, str]:
    """A generated project's own run: its own servers and its own temporary directory.

    pytest makes `$TMPDIR/pytest-of-<user>` private again at every start, which would shut a
    concurrent run's embedded PostgreSQL (another user, when run as root) out of its data.
    """
    tmp = tempfile.mkdtemp(prefix="project-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return {**ISOLATED_ENV, "TMPDIR": tmp, **extra}


def nox(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the project's own noxfile, as its README says."""
    return subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=project,
        env=isolated_env(**(env or {})),
        capture_output=True,
        text=True,
        check=False,
    )


# The one-line JSON figures the generated fuzz and fault tests print (shown by pytest's -rA).
FIGURES = re.compile(r'^\{"(?:operations|seconds)": .*\}$', re.MULTILINE)


def lint_and_tests(project: Path, variant: Variant) -> None:
    """The project's `nox -s lint tests` pass; its fuzz and fault figures are reported."""
    result = nox(project, "-s", "lint", "tests", env={"PYTEST_ADDOPTS": "-rA"})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    figures = [json.loads(line) for line in FIGURES.findall(result.stdout)]
    fuzz = [entry for entry in figures if "operations" in entry]
    fault = [entry for entry in figures if "lost" in entry]
    assert fuzz, "the generated tests reported no fuzzing figures"
    assert fault, "the generated tests reported no fault-test figures"
    entry = {"variant": variant.id, "fuzz": fuzz, "fault": fault}
    record("project", entry)
    print(json.dumps(entry))


@pytest.mark.parametrize("variant", CODE_VARIANTS, ids=lambda variant: variant.features.id)
def test_project_lint_and_tests_pass(render: Render, variant: Variant) -> None:
    lint_and_tests(render(variant), variant)


@pytest.mark.parametrize(
    "variant",
    [
        *(full_variant(t) for t in DEPLOY_TARGETS if full_variant(t) not in CODE_VARIANTS),
        *WITH_SERVICES,
    ],
    ids=lambda variant: variant.id,
)
def test_every_deploy_target_lints_and_tests(render: Render, variant: Variant) -> None:
    lint_and_tests(render(variant), variant)


@pytest.mark.parametrize("variant", NAMED, ids=lambda variant: variant.id)
def test_projects_named_around_scripts_lint_clean(render: Render, variant: Variant) -> None:
    # The tests import the package and `scripts`; their order must not depend on the name.
    result = nox(render(variant), "-s", "lint")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]


# A migration a reviewer should stop: it drops a column the running release still reads.
DESTRUCTIVE_MIGRATION = """\
\"\"\"Drop the documents' content.

Revision ID: 0099
Revises: 0001
Create Date: 2026-01-01 00:00:00
\"\"\"

from collections.abc import Sequence

from alembic import op

revision: str = "0099"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("documents", "content")


def downgrade() -> None:
    raise NotImplementedError
"""


def test_lint_stops_a_destructive_migration(render: Render, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(render(DEFAULT), project, ignore=shutil.ignore_patterns(".nox", ".venv"))
    versions = next(project.glob("src/*/migrations/versions"))
    assert [path.name for path in versions.glob("*.py")] == ["0001_documents.py"]
    (versions / "0099_drop_content.py").write_text(DESTRUCTIVE_MIGRATION)
    result = nox(project, "-s", "lint")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    # Every other check passed: the migration linter stopped it, naming the rule.
    assert "ban-drop-column" in output, output[-6000:]
    assert re.search(r"Command squawk .* failed", output), output[-6000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """Run a command in its own process group; interrupt it like Ctrl-C on exit."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise


def wait_ready(url: str, log: Path, timeout: float = 240) -> dict[str, object]:
    """Poll `url` until it answers 200; fail with the session's output otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return {"status": response.status, "body": response.read().decode()}
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} never answered 200; nox -s dev said:\n{log.read_text()[-6000:]}")


@pytest.mark.parametrize(
    "variant",
    [v for v in CODE_VARIANTS if v.features.pgvector and v.features.redis],
    ids=lambda variant: variant.features.id,
)
def test_dev_serves_without_docker(render: Render, variant: Variant, tmp_path: Path) -> None:
    project = render(variant)
    port = free_port()
    # A Docker client that cannot reach an engine: `nox -s dev` must run everything itself.
    env = isolated_env(PORT=str(port), DOCKER_HOST="unix:///nonexistent/docker.sock")
    log = tmp_path / "dev.log"
    with running([sys.executable, "-m", "nox", "-s", "dev"], project, env, log):
        ready = wait_ready(f"http://127.0.0.1:{port}/health/ready", log)
        # `nox -s migrate` finds the database `nox -s dev` runs...
        during = nox(project, "-s", "migrate", "--", "current")
    # ... and starts it again once `nox -s dev` has stopped.
    after = nox(project, "-s", "migrate", "--", "current")
    for result in (during, after):
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert "migrate: the embedded PostgreSQL of `nox -s dev`" in output
        assert "0001 (head)" in output
    # A database that does not answer gets one sentence, no traceback.
    closed = free_port()
    nowhere = f"postgresql://postgres:postgres@127.0.0.1:{closed}/app"
    missing = nox(project, "-s", "migrate", env={"DATABASE_URL": nowhere})
    said = missing.stdout + missing.stderr
    assert missing.returncode != 0
    assert f"migrate: no database to migrate: 127.0.0.1:{closed} does not answer" in said
    assert "DATABASE_URL (the environment, else .env) names it: check it" in said
    assert "Traceback" not in said
    assert '"database":"ok"' in ready["body"]
    assert '"redis":"ok"' in ready["body"]
    output = log.read_text()
    assert "no Docker engine: running the services locally instead" in output
    assert "started embedded PostgreSQL" in output
    assert "started redis-server" in output
