"""The vercel target: the entrypoint Vercel finds, vercel.json, and releases with the Vercel CLI.

The fast tier reads the plans, checks vercel.json against the documented fields and runs real
releases against fake `vercel`, `nox`, `git`, `tar` and `uv` commands. The validate tier runs
`vercel build` offline for every variant, then serves the function it produced the way Vercel's
runtime starts it, against PostgreSQL and Redis containers.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker
from uv import find_uv_bin

from . import containers
from .conftest import Render
from .deploy import BARE_ENV, commands, dry_run, nox
from .matrix import Features, Variant, full_variant, variants_of

VARIANTS = variants_of("vercel")
WITH_WORKER = full_variant("vercel")
WITHOUT_WORKER = next(v for v in VARIANTS if v.features == Features(True, True, False))
ENVIRONMENTS = ["staging", "production"]
PACKAGE = "my_service"
STAGING_DOMAIN = "my-service-staging.vercel.app"
BUILD = "build/vercel"

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)
worker_or_not = pytest.mark.parametrize(
    "variant", [WITH_WORKER, WITHOUT_WORKER], ids=lambda variant: variant.id
)


# ---------------------------------------------------------------------------------------------
# The entrypoint and vercel.json

# Where Vercel's Python runtime looks for a top-level `app`, in its order: @vercel/python's list,
# of which https://vercel.com/docs/frameworks/backend/fastapi documents the first names.
ENTRYPOINTS = [
    f"{folder}{name}.py"
    for folder in ("", "src/", "app/", "api/")
    for name in ("app", "index", "server", "main", "wsgi", "asgi")
]

# There is no offline schema for vercel.json: these are the fields of
# https://openapi.vercel.sh/vercel.json that are current, as Vercel's own typed mirror of it
# (@vercel/config) lists them. Deprecated ones (`builds`, `routes`, `env`, `build`) and private
# ones (`version`, `scope`, `github`, `wildcard`) are left out on purpose.
SCHEMA_URL = "https://openapi.vercel.sh/vercel.json"
TOP_LEVEL = {
    "$schema", "alias", "buildCommand", "bulkRedirectsPath", "bunVersion", "cleanUrls", "crons",
    "devCommand", "fluid", "framework", "functionFailoverRegions", "functions", "git", "headers",
    "ignoreCommand", "images", "installCommand", "name", "outputDirectory", "passiveRegions",
    "public", "redirects", "regions", "relatedProjects", "rewrites", "trailingSlash",
}  # fmt: skip
FUNCTION = {
    "excludeFiles", "includeFiles", "maxDuration", "memory", "runtime", "regions",
    "functionFailoverRegions", "supportsCancellation", "experimentalTriggers",
}  # fmt: skip
GIT = {"deploymentEnabled"}
PYTHON_FRAMEWORKS = {"fastapi", "flask", "django", "python"}


def config_problems(config: dict[str, Any]) -> list[str]:
    """Everything in a vercel.json that the current schema does not document."""
    problems = [] if config.get("$schema") == SCHEMA_URL else [f"$schema is not {SCHEMA_URL}"]
    problems += [f"unknown or deprecated key {key}" for key in sorted(config.keys() - TOP_LEVEL)]
    problems += [f"unknown key git.{key}" for key in sorted(config.get("git", {}).keys() - GIT)]
    for pattern, function in config.get("functions", {}).items():
        problems += [f"unknown key functions.{pattern}.{key}" for key in function.keys() - FUNCTION]
    if "framework" in config and config["framework"] not in PYTHON_FRAMEWORKS:
        problems.append(f"framework {config['framework']!r} is not a Python preset")
    return problems


def read_config(project: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project / "vercel.json").read_text())
    return config


def test_config_check_rejects_what_vercel_does_not_document() -> None:
    config = {
        "$schema": "https://openapi.vercel.sh/now.json",
        "version": 2,
        "builds": [{"src": "index.py", "use": "@vercel/python"}],
        "routes": [{"src": "/(.*)", "dest": "index.py"}],
        "framework": "nextjs",
        "git": {"deploymentEnabled": False, "autoDeploy": False},
        "functions": {"index.py": {"maxDuration": 30, "timeout": 30}},
    }
    assert sorted(config_problems(config)) == [
        "$schema is not https://openapi.vercel.sh/vercel.json",
        "framework 'nextjs' is not a Python preset",
        "unknown key functions.index.py.timeout",
        "unknown key git.autoDeploy",
        "unknown or deprecated key builds",
        "unknown or deprecated key routes",
        "unknown or deprecated key version",
    ]


@variants
def test_vercel_json_uses_only_documented_fields(render: Render, variant: Variant) -> None:
    assert config_problems(read_config(render(variant))) == []


def test_vercel_json_builds_with_the_fastapi_preset_and_never_from_git(render: Render) -> None:
    config = read_config(render(WITH_WORKER))
    # An unset preset builds a static site; a Git deployment would skip the migrations.
    assert config["framework"] == "fastapi"
    assert config["git"] == {"deploymentEnabled": False}


@variants
def test_index_py_is_the_entrypoint_vercel_finds(render: Render, variant: Variant) -> None:
    project = render(variant)
    found = [name for name in ENTRYPOINTS if (project / name).is_file()]
    assert found == ["index.py"]
    module = ast.parse((project / "index.py").read_text())
    imports = [node for node in module.body if isinstance(node, ast.ImportFrom)]
    assert [(node.module, [alias.name for alias in node.names]) for node in imports] == [
        (f"{PACKAGE}.app", ["create_app"])
    ]
    assignments = [node for node in module.body if isinstance(node, ast.Assign)]
    assert [ast.unparse(node) for node in assignments] == ["app = create_app()"]


@worker_or_not
def test_workflows_set_up_python_and_the_pinned_cli_then_pass_the_secrets(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    for workflow in ("deploy.yml", "rollback.yml"):
        steps = workflow_steps(project, workflow)
        python = [step for step in steps if step.get("uses", "").startswith("actions/setup-python")]
        assert [step["with"] for step in python] == [{"python-version-file": "pyproject.toml"}]
        assert re.fullmatch(r"vercel@\d+\.\d+\.\d+", pinned_cli(project))
        env = steps[-1]["env"]
        secrets = {"VERCEL_TOKEN", "VERCEL_ORG_ID", "VERCEL_PROJECT_ID", "DIRECT_DATABASE_URL"}
        if variant.features.worker:
            secrets |= {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}
        assert {name for name, value in env.items() if "secrets." in value} == secrets
        assert env["VERCEL_STAGING_DOMAIN"] == "${{ vars.VERCEL_STAGING_DOMAIN }}"


def workflow_steps(project: Path, workflow: str) -> list[dict[str, Any]]:
    """The steps of the release job of a workflow."""
    jobs = yaml.safe_load((project / ".github/workflows" / workflow).read_text())["jobs"]
    job = jobs.get("deploy") or jobs["rollback"]
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def pinned_cli(project: Path) -> str:
    """The Vercel CLI package the workflows install, e.g. vercel@50.44.0."""
    for step in workflow_steps(project, "deploy.yml"):
        if match := re.fullmatch(r"npm install --global (vercel@\S+)", step.get("run", "")):
            return match.group(1)
    raise AssertionError("the deploy workflow installs no Vercel CLI")


# ---------------------------------------------------------------------------------------------
# Plans


def deploy_plan(environment: str, *, worker: bool) -> list[str]:
    """Every command a dry-run deploy of v1.2.3 prints, in order."""
    production = environment == "production"
    target = "production" if production else "preview"
    scope = "'--scope=$VERCEL_ORG_ID'"
    plan = [
        "nox -s migrate",
        "git rev-parse HEAD",
        f"git archive --output={BUILD}.tar HEAD",
        f"tar --extract --file={BUILD}.tar --directory={BUILD}",
        f"vercel pull --yes --environment={target} --cwd={BUILD}",
        f"vercel build {'--prod ' if production else ''}--cwd={BUILD}",
        f"vercel deploy --prebuilt {'--prod --skip-domain ' if production else ''}"
        f"--meta version=v1.2.3 --cwd={BUILD}",
        f"vercel promote '$DEPLOYMENT_URL' --timeout=5m {scope}"
        if production
        else f"vercel alias set '$DEPLOYMENT_URL' {STAGING_DOMAIN} {scope}",
    ]
    if worker:
        plan.append(
            f"uv run --project={BUILD} --locked --no-dev modal deploy -m {PACKAGE}.modal_app"
            f" --env={environment} --tag=v1.2.3"
        )
    return plan


@worker_or_not
@environments
def test_deploy_migrates_then_builds_uploads_and_serves(
    render: Render, variant: Variant, environment: str
) -> None:
    plan = dry_run(render(variant), "deploy", environment, "--version", "v1.2.3")
    assert commands(plan) == deploy_plan(environment, worker=variant.features.worker)
    needs = "VERCEL_TOKEN set, VERCEL_ORG_ID set, VERCEL_PROJECT_ID set"
    if variant.features.worker:
        needs += ", MODAL_TOKEN_ID set, MODAL_TOKEN_SECRET set"
    assert f"{needs}, DIRECT_DATABASE_URL set" in plan


@worker_or_not
@environments
@pytest.mark.parametrize("version", [None, "v1.2.2"])
def test_rollback_finds_the_release_then_serves_it(
    render: Render, variant: Variant, environment: str, version: str | None
) -> None:
    plan = dry_run(render(variant), "rollback", environment, *([version] if version else []))
    target = "production" if environment == "production" else "preview"
    wanted = f" --meta version={version}" if version else ""
    scope = "'--scope=$VERCEL_ORG_ID'"
    expected = [
        f"vercel list --environment={target} --status=READY{wanted} --format=json",
        f"vercel rollback '$DEPLOYMENT_URL' --timeout=5m {scope}"
        if environment == "production"
        else f"vercel alias set '$DEPLOYMENT_URL' {STAGING_DOMAIN} {scope}",
    ]
    modal = "uv run --locked --no-dev modal app"
    if variant.features.worker and version:
        expected += [
            f"{modal} history my-service --env={environment} --json",
            f"{modal} rollback my-service '$MODAL_VERSION' --env={environment}",
        ]
    elif variant.features.worker:
        expected.append(f"{modal} rollback my-service --env={environment}")
    assert commands(plan) == expected


def test_production_rollback_says_how_to_undo_it(render: Render) -> None:
    plan = dry_run(render(WITHOUT_WORKER), "rollback", "production")
    assert "`vercel promote <deployment>` undoes this." in plan


# ---------------------------------------------------------------------------------------------
# Real runs, against fake commands

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NEW_URL = "my-service-new0001.vercel.app"
CREDENTIALS = {
    "VERCEL_TOKEN": "vercel-token-0123456789",
    "VERCEL_ORG_ID": "team_test",
    "VERCEL_PROJECT_ID": "prj_test",
    "DIRECT_DATABASE_URL": "postgresql://migrator:direct-secret@db.example.com:5432/postgres",
    "MODAL_TOKEN_ID": "ak-test",
    "MODAL_TOKEN_SECRET": "as-test",
}


def deployment(version: str | None, url: str, created: int) -> dict[str, Any]:
    """A deployment as `vercel list --format=json` prints it."""
    meta = {"version": version} if version else {}
    return {"url": url, "state": "READY", "createdAt": created, "meta": meta}


# Newest first, as Vercel lists them; the newest has no version: it was not made by a release.
DEPLOYMENTS = [
    deployment(None, "my-service-manual.vercel.app", 4000),
    deployment("v3", "my-service-v3.vercel.app", 3000),
    deployment("v2", "my-service-v2.vercel.app", 2000),
    deployment("v1", "my-service-v1.vercel.app", 1000),
]
HISTORY = [{"version": "v9", "tag": "v3"}, {"version": "v8", "tag": "v2"}]

# One script, installed under each name it fakes: it records the call, then acts like the tool.
FAKE = """\
#!{python}
import json, os, pathlib, sys

tool, args = pathlib.Path(sys.argv[0]).name, sys.argv[1:]
names = ("DATABASE_URL", "ENVIRONMENT", "IMAGE_TAG", "GIT_SHA")
seen = {{name: os.environ.get(name) for name in names}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"tool": tool, "args": args, "env": seen}}) + "\\n")
if " ".join([tool, *args]).startswith(os.environ.get("FAKE_FAIL") or "-"):
    sys.exit(1)
if tool == "git" and args[0] == "rev-parse":
    print("{commit}")
if tool == "vercel" and args[0] == "build":
    cwd = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--cwd="))
    function = pathlib.Path(cwd, ".vercel/output/functions/index.func")
    function.mkdir(parents=True)
    config = {{"runtime": "python3.12", "environment": {{"PYTHONPATH": "_vendor"}}}}
    (function / ".vc-config.json").write_text(json.dumps(config))
if tool == "vercel" and args[0] == "deploy":
    print("https://{url}", end="")  # stdout is the deployment URL, without a newline
if tool == "vercel" and args[0] == "list":
    wanted = args[args.index("--meta") + 1].split("=", 1)[1] if "--meta" in args else None
    deployments = json.loads(os.environ["FAKE_DEPLOYMENTS"])
    found = [d for d in deployments if wanted in (None, d["meta"].get("version"))]
    print(json.dumps({{"deployments": found}}))
if tool == "uv" and args[-4:-2] == ["history", "my-service"]:
    print(json.dumps({history}))
"""


@dataclass
class Fakes:
    """Fake commands first on PATH, and what they were called with."""

    env: dict[str, str]
    log: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [" ".join([call["tool"], *call["args"]]) for call in self.calls()]


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = FAKE.format(python=sys.executable, commit=COMMIT, url=NEW_URL, history=HISTORY)
    for tool in ("vercel", "nox", "git", "tar", "uv"):
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {
        **CREDENTIALS,
        "PATH": os.pathsep.join([str(bin_dir), BARE_ENV["PATH"]]),
        "FAKE_LOG": str(log),
        "FAKE_DEPLOYMENTS": json.dumps(DEPLOYMENTS),
    }
    return Fakes(env, log)


def copy(project: Path, tmp_path: Path) -> Path:
    """A copy of the rendered project, for a release that writes build/."""
    destination = tmp_path / "project"
    shutil.copytree(project, destination)
    return destination


def failure(output: str, session: str) -> str:
    """The one line a failed session prints (nox relays its stderr on stdout)."""
    return next(line for line in output.splitlines() if line.startswith(f"{session} failed:"))


@worker_or_not
def test_production_deploy_promotes_the_uploaded_build(
    render: Render, variant: Variant, fakes: Fakes, tmp_path: Path
) -> None:
    project = copy(render(variant), tmp_path)
    result = nox(project, "deploy", "production", "--version", "v4", env=fakes.env)
    assert result.returncode == 0, result.stdout + result.stderr
    scope = "--scope=team_test"
    expected = [
        "nox -s migrate",
        "git rev-parse HEAD",
        f"git archive --output={BUILD}.tar {COMMIT}",
        f"tar --extract --file={BUILD}.tar --directory={BUILD}",
        f"vercel pull --yes --environment=production --cwd={BUILD}",
        f"vercel build --prod --cwd={BUILD}",
        f"vercel deploy --prebuilt --prod --skip-domain --meta version=v4 --cwd={BUILD}",
        f"vercel promote https://{NEW_URL} --timeout=5m {scope}",
    ]
    if variant.features.worker:
        expected.append(
            f"uv run --project={BUILD} --locked --no-dev modal deploy -m {PACKAGE}.modal_app"
            " --env=production --tag=v4"
        )
    assert fakes.commands() == expected
    calls = fakes.calls()
    # Migrations go over the direct connection, not the pooler.
    assert calls[0]["env"]["DATABASE_URL"] == CREDENTIALS["DIRECT_DATABASE_URL"]
    if variant.features.worker:
        assert calls[-1]["env"]["IMAGE_TAG"] == "v4"
        assert calls[-1]["env"]["GIT_SHA"] == COMMIT
    function = project / BUILD / ".vercel/output/functions/index.func/.vc-config.json"
    labelled = {"PYTHONPATH": "_vendor", "IMAGE_TAG": "v4", "GIT_SHA": COMMIT}
    assert json.loads(function.read_text())["environment"] == labelled
    assert "direct-secret" not in result.stdout + result.stderr
    assert "deploy of production done." in result.stdout


def test_staging_deploy_serves_the_build_at_the_staging_domain(
    render: Render, fakes: Fakes, tmp_path: Path
) -> None:
    project = copy(render(WITHOUT_WORKER), tmp_path)
    env = {**fakes.env, "VERCEL_STAGING_DOMAIN": "staging.api.example.com"}
    result = nox(project, "deploy", "staging", "--version", "v4", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fakes.commands()[-3:] == [
        f"vercel build --cwd={BUILD}",
        f"vercel deploy --prebuilt --meta version=v4 --cwd={BUILD}",
        f"vercel alias set https://{NEW_URL} staging.api.example.com --scope=team_test",
    ]


def test_stale_build_output_is_replaced_by_the_export(
    render: Render, fakes: Fakes, tmp_path: Path
) -> None:
    project = copy(render(WITHOUT_WORKER), tmp_path)
    stale = project / BUILD / "backups" / "old.dump"
    stale.parent.mkdir(parents=True)
    stale.write_text("a dump from an earlier release")
    result = nox(project, "deploy", "staging", "--version", "v4", env=fakes.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not stale.exists()


@pytest.mark.parametrize(
    ("fail", "last"),
    [
        ("nox -s migrate", "nox -s migrate"),
        ("vercel build", f"vercel build --cwd={BUILD}"),
        ("vercel deploy", f"vercel deploy --prebuilt --meta version=v4 --cwd={BUILD}"),
    ],
)
def test_a_failed_step_stops_the_release(
    render: Render, fakes: Fakes, tmp_path: Path, fail: str, last: str
) -> None:
    project = copy(render(WITH_WORKER), tmp_path)
    env = {**fakes.env, "FAKE_FAIL": fail}
    result = nox(project, "deploy", "staging", "--version", "v4", env=env)
    assert result.returncode != 0
    assert f"`{' '.join(fail.split()[:2])}` failed with exit code 1." in failure(
        result.stdout, "deploy"
    )
    assert fakes.commands()[-1] == last


@environments
def test_rollback_restores_the_release_before_the_newest(
    render: Render, fakes: Fakes, environment: str
) -> None:
    result = nox(render(WITH_WORKER), "rollback", environment, env=fakes.env)
    assert result.returncode == 0, result.stdout + result.stderr
    target = "production" if environment == "production" else "preview"
    switch = (
        "vercel rollback my-service-v2.vercel.app --timeout=5m --scope=team_test"
        if environment == "production"
        else f"vercel alias set my-service-v2.vercel.app {STAGING_DOMAIN} --scope=team_test"
    )
    assert fakes.commands() == [
        f"vercel list --environment={target} --status=READY --format=json",
        switch,
        f"uv run --locked --no-dev modal app rollback my-service --env={environment}",
    ]
    assert "restoring v2: https://my-service-v2.vercel.app" in result.stdout


def test_rollback_to_a_version_restores_its_deployment_and_worker(
    render: Render, fakes: Fakes
) -> None:
    result = nox(render(WITH_WORKER), "rollback", "production", "v3", env=fakes.env)
    assert result.returncode == 0, result.stdout + result.stderr
    modal = "uv run --locked --no-dev modal app"
    assert fakes.commands() == [
        "vercel list --environment=production --status=READY --meta version=v3 --format=json",
        "vercel rollback my-service-v3.vercel.app --timeout=5m --scope=team_test",
        f"{modal} history my-service --env=production --json",
        f"{modal} rollback my-service v9 --env=production",
    ]


@pytest.mark.parametrize(
    ("deployments", "posargs", "message"),
    [
        (DEPLOYMENTS[:2], [], "production has no release before the newest"),
        (DEPLOYMENTS, ["v7"], "production has no READY deployment of v7"),
    ],
    ids=["one-release", "unknown-version"],
)
def test_rollback_without_a_deployment_to_restore_changes_nothing(
    render: Render,
    fakes: Fakes,
    deployments: list[dict[str, Any]],
    posargs: list[str],
    message: str,
) -> None:
    env = {**fakes.env, "FAKE_DEPLOYMENTS": json.dumps(deployments)}
    result = nox(render(WITH_WORKER), "rollback", "production", *posargs, env=env)
    assert result.returncode != 0
    assert failure(result.stdout, "rollback") == (
        f"rollback failed: {message}; `vercel list` shows the deployments."
    )
    assert [call["args"][0] for call in fakes.calls()] == ["list"]


# ---------------------------------------------------------------------------------------------
# Validate tier: `vercel build` offline, and the function it builds, served

CLI_CACHE = Path(tempfile.gettempdir()) / "slipway-vercel-cli"
API_KEY = "vercel-function-test-key-0123456789abcdef"
SOCKET = ("--host=/var/run/postgresql", "--username=postgres")  # the server's own socket directory


@pytest.fixture(scope="session")
def vercel_cli(render: Render) -> Path:
    """The `vercel` the workflows pin, installed once into a cache directory."""
    package = pinned_cli(render(WITH_WORKER))
    prefix = CLI_CACHE / package
    cli = prefix / "node_modules/.bin/vercel"
    if not cli.exists():
        npm = shutil.which("npm")
        assert npm, "the validate tier needs Node.js and npm to install the Vercel CLI"
        result = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return cli


@dataclass(frozen=True)
class Services:
    """PostgreSQL and Redis containers, reachable from this machine."""

    postgres: Any
    postgres_port: int
    redis_url: str

    def database(self, name: str) -> str:
        """A fresh database of this name, and its URL."""
        command = ["psql", *SOCKET, "-c", f'CREATE DATABASE "{name}"']
        result = self.postgres.exec_run(command)
        assert result.exit_code == 0, result.output.decode(errors="replace")
        return f"postgresql://postgres:postgres@127.0.0.1:{self.postgres_port}/{name}"


@pytest.fixture(scope="module")
def services(render: Render) -> Iterator[Services]:
    project = render(WITH_WORKER)
    with containers.lab("slipway-vercel") as lab:
        postgres = lab.run(
            containers.base_image("POSTGRES_IMAGE", project),
            "postgres",
            environment={"POSTGRES_PASSWORD": "postgres"},
            ports={"5432/tcp": ("127.0.0.1", None)},
        )
        redis = lab.run(
            containers.base_image("REDIS_IMAGE", project),
            "redis",
            ports={"6379/tcp": ("127.0.0.1", None)},
        )
        containers.eventually(lambda: postgres.exec_run(["pg_isready", *SOCKET]).exit_code == 0, 60)
        yield Services(
            postgres=postgres,
            postgres_port=containers.published_port(postgres, 5432),
            redis_url=f"redis://127.0.0.1:{containers.published_port(redis, 6379)}/0",
        )


Build = Callable[[Variant], Path]


@pytest.fixture(scope="session")
def built(render: Render, vercel_cli: Path, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """`vercel build` of a copy of a variant's project, offline, once per run: the copy."""
    copies: dict[Variant, Path] = {}

    def build(variant: Variant) -> Path:
        if variant in copies:
            return copies[variant]
        copy = tmp_path_factory.mktemp(variant.id) / "project"
        shutil.copytree(render(variant), copy)
        link = {"projectId": "prj_test", "orgId": "team_test", "settings": {"framework": "fastapi"}}
        (copy / ".vercel").mkdir()
        (copy / ".vercel/project.json").write_text(json.dumps(link))
        # As in CI: no Vercel credentials, and no environment of nox's to install into (the
        # runtime's `uv pip install` would follow UV_PYTHON there, out of the function).
        nox_env = {"UV_PYTHON", "UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV"}
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("VERCEL_") and name not in nox_env
        }
        env |= {
            "PATH": os.pathsep.join([str(Path(find_uv_bin()).parent), os.environ["PATH"]]),
            "VERCEL_TELEMETRY_DISABLED": "1",
            "NO_UPDATE_NOTIFIER": "1",
        }
        result = subprocess.run(
            [str(vercel_cli), "build", "--yes"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        copies[variant] = copy
        return copy

    return build


def locked_dependencies(project: Path, python: str) -> dict[str, str]:
    """The service's locked runtime dependencies on Linux and this Python: name -> version."""
    exported = subprocess.run(
        [find_uv_bin(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    platform = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    dependencies = {}
    for line in exported.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement, _, marker = line.partition(";")
        if marker and not Marker(marker).evaluate(platform):
            continue
        name, _, version = requirement.strip().partition("==")
        dependencies[normalize(name)] = version
    return dependencies


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@variants
@pytest.mark.validate
def test_vercel_builds_a_python_function_with_the_locked_dependencies(
    render: Render, built: Build, variant: Variant
) -> None:
    project = render(variant)
    python = yaml.safe_load((project / ".copier-answers.yml").read_text())["python_version"]
    function = built(variant) / ".vercel/output/functions/index.func"
    config = json.loads((function / ".vc-config.json").read_text())
    assert config["runtime"] == f"python{python}"
    assert config["handler"] == "vc__handler__python.vc_handler"
    files = config["filePathMap"]
    assert "index.py" in files
    assert f"_vendor/{PACKAGE}/app.py" in files
    assert "_vendor/vercel_runtime/vc_init.py" in files  # what starts the function
    vendored = {
        normalize(match.group(1)): match.group(2)
        for key in files
        if (match := re.fullmatch(r"_vendor/([^/]+)-([^/-]+)\.dist-info/METADATA", key))
    }
    locked = locked_dependencies(project, python)
    assert {name: vendored.get(name) for name in locked} == locked


@contextmanager
def served(function: Path, python: str, env: dict[str, str]) -> Iterator[int]:
    """Start the function as Vercel's runtime does: import the handler module with an IPC socket
    to announce its port on and send its logs to. Yields the port; a failing test prints what the
    function said."""
    ipc_dir = tempfile.mkdtemp(prefix="vc-ipc-")  # short: a Unix socket path has ~100 bytes
    messages: list[dict[str, Any]] = []
    started = threading.Event()

    def receive(connection: socket.socket) -> None:
        buffer = b""
        with connection:
            while chunk := connection.recv(65536):
                *complete, buffer = (buffer + chunk).split(b"\0")
                messages.extend(json.loads(raw) for raw in complete)
                if any(m["type"] in {"server-started", "unrecoverable-error"} for m in messages):
                    started.set()
        started.set()  # the function exited

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(os.path.join(ipc_dir, "ipc.sock"))
        listener.listen(1)
        listener.settimeout(120)
        process = subprocess.Popen(
            # -S: the standard library and what the function carries, not this test's packages
            [python, "-S", "-c", "import vc__handler__python"],
            cwd=function,
            env={**env, "VERCEL_IPC_PATH": listener.getsockname()},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        failed = False
        try:
            connection, _ = listener.accept()
            threading.Thread(target=receive, args=(connection,), daemon=True).start()
            assert started.wait(120), "the function did not start within 120 s"
            announced = [m for m in messages if m["type"] == "server-started"]
            assert announced, messages
            yield int(announced[0]["payload"]["httpPort"])
        except BaseException:
            failed = True
            raise
        finally:
            process.kill()
            output = process.communicate()[0]
            if failed:
                print(output, *map(said, messages), sep="\n")
    shutil.rmtree(ipc_dir)


def said(message: dict[str, Any]) -> str:
    """An IPC message of the function, its log lines decoded."""
    payload = message.get("payload", {})
    if message["type"] == "log" and "message" in payload:
        return base64.b64decode(payload["message"]).decode(errors="replace")
    return json.dumps(message)


def unpack(built: Path, destination: Path) -> Path:
    """The function's files, where its .vc-config.json maps them (what Vercel uploads)."""
    function = built / ".vercel/output/functions/index.func"
    shutil.copytree(function, destination)
    files = json.loads((function / ".vc-config.json").read_text())["filePathMap"]
    for name, source in files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built / source, target)
    return destination


@variants
@pytest.mark.validate
def test_the_built_function_serves_the_api_against_postgres(
    render: Render, built: Build, variant: Variant, services: Services, tmp_path: Path
) -> None:
    project = render(variant)
    python = yaml.safe_load((project / ".copier-answers.yml").read_text())["python_version"]
    interpreter = subprocess.run(
        [find_uv_bin(), "python", "find", python], capture_output=True, text=True, check=True
    ).stdout.strip()
    function = unpack(built(variant), tmp_path / "function")
    config = json.loads((function / ".vc-config.json").read_text())
    settings = {
        "ENVIRONMENT": "production",
        "DATABASE_URL": services.database(f"vercel_{uuid.uuid4().hex[:8]}"),
        "DATABASE_POOL_SIZE": "0",
        "API_KEY": API_KEY,
        **({"REDIS_URL": services.redis_url} if variant.features.redis else {}),
    }
    env = {"PATH": BARE_ENV["PATH"], "LANG": "C.UTF-8", **config["environment"], **settings}
    # The function carries the migrations and Alembic: migrate with them, as CI would.
    migrate = subprocess.run(
        [interpreter, "-S", "-m", "alembic", "upgrade", "head"],
        cwd=function,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with served(function, interpreter, env) as port:
        base = f"http://127.0.0.1:{port}"
        assert containers.eventually(lambda: containers.http("GET", f"{base}/health")[0] == 200)
        status, body = containers.http("GET", f"{base}/health/ready")
        checks = {"database": "ok", **({"redis": "ok"} if variant.features.redis else {})}
        assert (status, body["checks"]) == (200, checks)
        key = {"X-API-Key": API_KEY}
        document = {"title": "On Vercel", "content": "served by a function"}
        status, created = containers.http("POST", f"{base}/documents", document, key)
        assert status == 201, created
        status, read = containers.http("GET", f"{base}/documents/{created['id']}", headers=key)
        assert (status, read["content"]) == (200, "served by a function")
