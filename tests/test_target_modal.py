"""The modal target: `modal run` migrates, `modal deploy` releases, `modal app rollback` goes back.

The fast tier reads the plans and runs real releases against a fake `modal` CLI and a fake web
endpoint on this machine. The validate tier installs each project the way its Modal image does and
imports the Modal app module there, without a Modal token.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import Render
from .deploy import BARE_ENV, commands, dry_run, nox, requests
from .matrix import Variant, full_variant, variants_of

ENVIRONMENTS = ["staging", "production"]
APP = "my-service"
MODULE = "my_service.modal_app"
TOKENS = {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"}
# What `modal app history APP --json` prints: newest first.
HISTORY = [
    {"version": "v3", "time_deployed": "2026-11-03T10:00:00Z", "tag": "v1.2.0"},
    {"version": "v2", "time_deployed": "2026-11-02T10:00:00Z", "tag": "v1.1.0"},
    {"version": "v1", "time_deployed": "2026-11-01T10:00:00Z", "tag": "v1.0.0"},
]

environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


# ---------------------------------------------------------------------------------------------
# Plans


@environments
def test_deploy_migrates_then_deploys_the_tagged_version_then_checks_it(
    render: Render, environment: str
) -> None:
    plan = dry_run(render(full_variant("modal")), "deploy", environment, "--version", "v1.2.3")
    assert "needs: `modal` on PATH, MODAL_TOKEN_ID set, MODAL_TOKEN_SECRET set" in plan
    assert commands(plan) == [
        f"modal run --env {environment} -m {MODULE}::migrate",
        f"modal deploy --env {environment} --tag v1.2.3 -m {MODULE}",
        f"modal function info {APP}/web --env {environment} --json",
    ]
    assert requests(plan) == [
        "GET $WEB_URL/version  (until it reports image_tag v1.2.3)",
        "GET $WEB_URL/health/ready  (until it answers 200)",
    ]


@environments
def test_rollback_restores_the_previous_deployment(render: Render, environment: str) -> None:
    plan = dry_run(render(full_variant("modal")), "rollback", environment)
    assert "Rollbacks are a feature of Modal's Team and Enterprise plans" in plan
    assert commands(plan) == [
        f"modal app history {APP} --env {environment} --json",
        f"modal app rollback {APP} '<the previous deployment>' --env {environment}",
        f"modal function info {APP}/web --env {environment} --json",
    ]
    assert requests(plan) == ["GET $WEB_URL/health/ready  (until it answers 200)"]


def test_rollback_to_a_version_checks_that_it_serves_it(render: Render) -> None:
    plan = dry_run(render(full_variant("modal")), "rollback", "production", "v1.0.0")
    assert f"modal app rollback {APP} '<the deployment tagged v1.0.0>' --env production" in (
        commands(plan)
    )
    assert "GET $WEB_URL/version  (until it reports image_tag v1.0.0)" in requests(plan)


@pytest.mark.parametrize("variant", variants_of("modal"), ids=lambda variant: variant.id)
def test_every_variant_deploys_its_own_module(render: Render, variant: Variant) -> None:
    script = (render(variant) / "scripts/deploy/modal.py").read_text()
    assert f'APP = "{APP}"\nMODULE = "{MODULE}"\n' in script


# ---------------------------------------------------------------------------------------------
# Real runs, against a fake `modal` and a fake web endpoint

FAKE_MODAL = """\
#!{python}
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_MODAL_LOG"], "a") as log:
    seen = {{name: os.environ.get(name) for name in ("IMAGE_TAG", "GIT_SHA")}}
    log.write(json.dumps({{"args": args, "env": seen}}) + "\\n")
if args[0] == os.environ.get("FAKE_MODAL_FAIL"):
    sys.exit(1)
if args[:2] == ["app", "history"]:
    print(os.environ["FAKE_MODAL_HISTORY"])
if args[:2] == ["function", "info"]:
    print(json.dumps({{"name": "web", "web_info": {{"web_url": os.environ["FAKE_MODAL_URL"]}}}}))
"""


class Endpoint(ThreadingHTTPServer):
    """The deployed web endpoint: reports `tag` on /version and answers its readiness check."""

    tag = ""
    paths: list[str]


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        bodies = {"/version": {"image_tag": self.server.tag}, "/health/ready": {"status": "ready"}}
        body = json.dumps(bodies.get(self.path, {})).encode()
        self.send_response(200 if self.path in bodies else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint(("127.0.0.1", 0), Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def release(
    project: Path, tmp_path: Path, endpoint: Endpoint, *args: str, fail: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run a nox session with the fake `modal` first on PATH; return it and the CLI calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "modal"
    fake.write_text(FAKE_MODAL.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "modal.log"
    log.touch()
    env = {
        **TOKENS,
        "PATH": os.pathsep.join([str(bin_dir), BARE_ENV["PATH"]]),
        "FAKE_MODAL_LOG": str(log),
        "FAKE_MODAL_HISTORY": json.dumps(HISTORY),
        "FAKE_MODAL_URL": f"http://127.0.0.1:{endpoint.server_address[1]}/",
        "FAKE_MODAL_FAIL": fail,
    }
    result = nox(project, *args, env=env)
    return result, [json.loads(line) for line in log.read_text().splitlines()]


def checkout(project: Path, tmp_path: Path) -> tuple[Path, str]:
    """A git checkout of the project, and its commit."""
    copy = tmp_path / "checkout"
    shutil.copytree(project, copy)
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Release"]):
        subprocess.run([*git, *command], cwd=copy, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=copy, capture_output=True, text=True, check=True
    )
    return copy, commit.stdout.strip()


def test_deploy(render: Render, tmp_path: Path, endpoint: Endpoint) -> None:
    endpoint.tag = "v2.0.0"
    project, commit = checkout(render(full_variant("modal")), tmp_path)
    result, calls = release(project, tmp_path, endpoint, "deploy", "staging", "--version", "v2.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call["args"] for call in calls] == [
        ["run", "--env", "staging", "-m", f"{MODULE}::migrate"],
        ["deploy", "--env", "staging", "--tag", "v2.0.0", "-m", MODULE],
        ["function", "info", f"{APP}/web", "--env", "staging", "--json"],
    ]
    # GET /version reports what the deploy handed to modal_app.py
    assert calls[1]["env"] == {"IMAGE_TAG": "v2.0.0", "GIT_SHA": commit}
    assert endpoint.paths[-2:] == ["/version", "/health/ready"]
    assert "deploy of staging done." in result.stdout


def test_failed_migration_deploys_nothing(
    render: Render, tmp_path: Path, endpoint: Endpoint
) -> None:
    project = render(full_variant("modal"))
    result, calls = release(
        project, tmp_path, endpoint, "deploy", "staging", "--version", "v2", fail="run"
    )
    assert result.returncode != 0
    assert "deploy failed: `modal run` failed with exit code 1." in result.stdout
    assert [call["args"][0] for call in calls] == ["run"]
    assert endpoint.paths == []


@pytest.mark.parametrize(
    ("posargs", "restored", "tag"),
    [([], "v2", "v1.1.0"), (["v1.0.0"], "v1", "v1.0.0"), (["v1"], "v1", "v1.0.0")],
)
def test_rollback(
    render: Render,
    tmp_path: Path,
    endpoint: Endpoint,
    posargs: list[str],
    restored: str,
    tag: str,
) -> None:
    endpoint.tag = tag
    result, calls = release(
        render(full_variant("modal")), tmp_path, endpoint, "rollback", "production", *posargs
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call["args"] for call in calls] == [
        ["app", "history", APP, "--env", "production", "--json"],
        ["app", "rollback", APP, restored, "--env", "production"],
        ["function", "info", f"{APP}/web", "--env", "production", "--json"],
    ]
    assert endpoint.paths[-2:] == ["/version", "/health/ready"]


def test_rollback_to_an_unknown_version_changes_nothing(
    render: Render, tmp_path: Path, endpoint: Endpoint
) -> None:
    result, calls = release(
        render(full_variant("modal")), tmp_path, endpoint, "rollback", "staging", "v0.9.0"
    )
    assert result.returncode != 0
    assert (
        f"rollback failed: no deployment of {APP} in the Modal environment staging is tagged "
        f"v0.9.0; `modal app history {APP} --env staging` lists them." in result.stdout
    )
    assert [call["args"][:2] for call in calls] == [["app", "history"]]


# ---------------------------------------------------------------------------------------------
# The Modal app module, installed as its image installs it

INSPECT = """\
import json
from importlib.metadata import version

import modal

from my_service import modal_app

functions = {}
for name, value in vars(modal_app).items():
    if isinstance(value, modal.Function) and value.app is modal_app.app:
        info = value.info()
        functions[name] = {
            "web": info.web_info is not None,
            "retries": info.max_retries,
            "timeout": info.timeout,
        }
found = {"app": modal_app.app.name, "version": version("my-service"), "functions": functions}
print(json.dumps(found))
"""

MODAL_APPS = [
    *variants_of("modal"),
    *(variant for variant in variants_of("vercel") if variant.features.worker),
]


def install_like_the_image(project: Path, workdir: Path) -> Path:
    """Run the image's `uv sync` steps on only what its COPY lines copy; return its Python."""
    module = (project / "src/my_service/modal_app.py").read_text()
    dependencies, project_step = re.findall(r'"RUN (uv sync [^"]+)"', module)
    assert '"COPY pyproject.toml uv.lock ./"' in module
    assert '"COPY src ./src"' in module
    workdir.mkdir()
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(workdir / ".venv"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(project / name, workdir / name)
    subprocess.run(dependencies.split(), cwd=workdir, env=env, check=True, capture_output=True)
    shutil.copytree(project / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(project_step.split(), cwd=workdir, env=env, check=True, capture_output=True)
    return workdir / ".venv/bin/python"


@pytest.mark.validate
@pytest.mark.parametrize("variant", MODAL_APPS, ids=lambda variant: variant.id)
def test_modal_app_imports_and_declares_its_functions(
    render: Render, variant: Variant, tmp_path: Path
) -> None:
    python = install_like_the_image(render(variant), tmp_path / "app")
    home = tmp_path / "home"  # no ~/.modal.toml
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")} | {"HOME": str(home)}
    result = subprocess.run(
        [str(python), "-c", INSPECT], cwd=home, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)

    expected: dict[str, dict[str, Any]] = {
        "migrate": {"web": False, "retries": None, "timeout": 1800}
    }
    if variant.deploy_target == "modal":
        expected["web"] = {"web": True, "retries": None, "timeout": 300}
    if variant.features.worker:
        expected["analyze_document"] = {"web": False, "retries": 3, "timeout": 60}
    assert found == {"app": APP, "version": "0.1.0", "functions": expected}
