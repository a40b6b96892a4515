"""The vercel target: the entrypoint Vercel finds, vercel.json, and releases with the Vercel CLI.

The fast tier reads the plans, checks vercel.json against the documented fields and runs real
releases against the stateful fake of Vercel, its database lock and its worker's Modal
(tests/fakes/vercel.py). The validate tier runs `vercel build` offline for every variant, then
serves the function it produced the way Vercel's runtime starts it, against PostgreSQL and Redis
containers.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
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
from .deploy import BARE_ENV, commands, dry_run
from .fakes import Fakes
from .fakes import vercel as fake
from .matrix import Features, Variant, full_variant, variants_of
from .test_release_scenarios import Scene, git, make_repository

VARIANTS = variants_of("vercel")
WITH_WORKER = full_variant("vercel")
WITHOUT_WORKER = next(v for v in VARIANTS if v.features == Features(True, True, False))
ENVIRONMENTS = ["staging", "production"]
PACKAGE = "my_service"
STAGING_DOMAIN = "my-service-staging.vercel.app"
PRODUCTION_DOMAIN = "my-service.vercel.app"
DATABASE = fake.CREDENTIALS["DIRECT_DATABASE_URL"]
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
def test_workflows_set_up_python_then_pass_the_secrets_and_domains(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    for workflow in ("deploy.yml", "rollback.yml"):
        steps = workflow_steps(project, workflow)
        python = [step for step in steps if step.get("uses", "").startswith("actions/setup-python")]
        assert [step["with"] for step in python] == [{"python-version-file": "pyproject.toml"}]
        env = steps[-1]["env"]
        secrets = {"VERCEL_TOKEN", "VERCEL_ORG_ID", "VERCEL_PROJECT_ID", "DIRECT_DATABASE_URL"}
        if variant.features.worker:
            secrets |= {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}
        assert {name for name, value in env.items() if "secrets." in value} == secrets
        for domain in ("VERCEL_STAGING_DOMAIN", "VERCEL_PRODUCTION_DOMAIN"):
            assert env[domain] == f"${{{{ vars.{domain} }}}}"


def workflow_steps(project: Path, workflow: str) -> list[dict[str, Any]]:
    """The steps of the release job of a workflow."""
    jobs = yaml.safe_load((project / ".github/workflows" / workflow).read_text())["jobs"]
    job = jobs.get("deploy") or jobs["rollback"]
    steps: list[dict[str, Any]] = job["steps"]
    return steps


# ---------------------------------------------------------------------------------------------
# Plans


def lock_command(command: str) -> list[str]:
    """The `psql` that holds the release lock (without `env PGAPPNAME=...`), its SQL as <lock>."""
    argv = shlex.split(command)
    if argv[0] == "env":
        assert argv[1].startswith("PGAPPNAME=")
        argv = argv[2:]
    sql = argv[5].removeprefix("--command=")
    assert "pg_try_advisory_lock(key)" in sql
    assert f"hashtext('{PACKAGE}.release')" in sql
    return [*argv[:5], "--command=<lock>", *argv[6:]]


LOCK = [
    "psql",
    "--no-psqlrc",
    "--quiet",
    "--tuples-only",
    "--no-align",
    "--command=<lock>",
    "--file=-",
    "$DIRECT_DATABASE_URL",
]


def domain_of(environment: str) -> str:
    return STAGING_DOMAIN if environment == "staging" else PRODUCTION_DOMAIN


def switch(environment: str, deployment: str, scope: str = "'--scope=$VERCEL_ORG_ID'") -> str:
    """The command that points the environment's domains at a deployment."""
    if environment == "production":
        return f"vercel promote {deployment} --timeout=5m {scope}"
    return f"vercel alias set {deployment} {STAGING_DOMAIN} {scope}"


@worker_or_not
@environments
def test_deploy_locks_migrates_builds_uploads_then_switches_the_worker_then_the_api(
    render: Render, variant: Variant, environment: str
) -> None:
    plan = dry_run(render(variant), "deploy", environment, "--version", "v1.2.3")
    production = environment == "production"
    target = "production" if production else "preview"
    scope = "'--scope=$VERCEL_ORG_ID'"
    lock, *rest = commands(plan)
    assert lock_command(lock) == LOCK
    meta = (
        "--meta release=v1.2.3 --meta 'previous=<deployment of serving release>' "
        "--meta revision=0001 --meta commit=HEAD"
    )
    expected = [
        f"vercel api /v13/deployments/{domain_of(environment)} {scope}",
        "nox -s migrate",
        "git rev-parse HEAD",
        f"git archive --output={BUILD}.tar HEAD",
        f"tar --extract --file={BUILD}.tar --directory={BUILD}",
        f"vercel pull --yes --environment={target} --cwd={BUILD}",
        f"vercel build {'--prod ' if production else ''}--cwd={BUILD}",
        f"vercel deploy --prebuilt {'--prod --skip-domain ' if production else ''}{meta}",
    ]
    if variant.features.worker:
        expected.append(
            f"uv run --directory={BUILD} --locked --no-dev modal deploy --env {environment}"
            f" --tag v1.2.3 -m {PACKAGE}.modal_app"
        )
    expected.append(switch(environment, "'$DEPLOYMENT_URL'"))
    upload = rest.index(next(c for c in rest if c.startswith("vercel deploy")))
    assert rest[upload].endswith(f" --format=json --cwd={BUILD}")
    assert re.search(r" --meta 'by=[^']+'", rest[upload])
    rest[upload] = re.sub(r" --meta 'by=[^']+' --format=json --cwd=\S+$", "", rest[upload])
    assert rest == expected
    needs = "`nox` on PATH, `git` on PATH, `tar` on PATH, `vercel` on PATH, `psql` on PATH"
    needs += ", `uv` on PATH" if variant.features.worker else ""
    assert f"needs: {needs}, " in plan
    credentials = "VERCEL_TOKEN set, VERCEL_ORG_ID set, VERCEL_PROJECT_ID set"
    if variant.features.worker:
        credentials += ", MODAL_TOKEN_ID set, MODAL_TOKEN_SECRET set"
    assert f"{credentials}, DIRECT_DATABASE_URL set" in plan


@worker_or_not
@environments
@pytest.mark.parametrize("version", [None, "v1.2.2"])
def test_rollback_follows_the_serving_release_then_switches_the_worker_then_the_api(
    render: Render, variant: Variant, environment: str, version: str | None
) -> None:
    plan = dry_run(render(variant), "rollback", environment, *([version] if version else []))
    target = "production" if environment == "production" else "preview"
    scope = "'--scope=$VERCEL_ORG_ID'"
    lock, *rest = commands(plan)
    assert lock_command(lock) == LOCK
    expected = [f"vercel api /v13/deployments/{domain_of(environment)} {scope}"]
    if version:
        expected.append(
            f"vercel list --environment={target} --status=READY --meta release={version}"
            f" --format=json {scope}"
        )
    label = version or "'<previous release>'"
    if variant.features.worker:
        worktree = "'build/releases/<its commit>'"
        expected += [
            f"git worktree add --force --detach {worktree} '<its commit>'",
            f"uv run '--directory=build/releases/<its commit>' --locked --no-dev modal deploy"
            f" --env {environment} --tag {label} -m {PACKAGE}.modal_app",
            f"git worktree remove --force {worktree}",
        ]
    name = f"'<deployment of {version or 'previous release'}>'"
    expected.append(switch(environment, name))
    assert rest == expected
    assert "vercel rollback" not in plan


# ---------------------------------------------------------------------------------------------
# Real releases, against the fake Vercel (and Modal, for the worker)


def platform(render: Render, variant: Variant, directory: Path) -> Scene:
    """The fake platform, and the project's repository: commits v1, v2 (+ a migration) and v3."""
    repo = make_repository(render(variant), directory)
    fakes = Fakes(directory / "platform", "vercel", fake.TARGET.tools)
    return Scene(fake.TARGET, fakes, repo, fake.TARGET.prepare(fakes, repo.path))


def release(
    scene: Scene, action: str, environment: str, *args: str, checkout: str = "v3"
) -> subprocess.CompletedProcess[str]:
    """Deploy a version (`args` starts with it; from its checkout) or roll back."""
    if action == "deploy":
        checkout = args[0]
        args = ("--version", *args)
    project = scene.repo.checkout(checkout)
    return scene.fakes.release(project, action, environment, *args, env=scene.env)


def released(scene: Scene, environment: str, *versions: str) -> None:
    for version in versions:
        result = release(scene, "deploy", environment, version)
        assert result.returncode == 0, result.stdout + result.stderr


def commit(scene: Scene, version: str) -> str:
    return git(scene.repo.path, "rev-parse", f"{version}^{{commit}}").strip()


def deployments(scene: Scene) -> list[dict[str, Any]]:
    """The project's deployments, oldest first."""
    found: list[dict[str, Any]] = fake.vercel_state(scene.fakes.state())["deployments"]
    return found


def serves(scene: Scene, environment: str) -> str:
    """The URL of the deployment the environment's domain serves."""
    url: str = fake.vercel_state(scene.fakes.state())["aliases"][domain_of(environment)]
    return url


def worker_runs(scene: Scene, environment: str = "staging") -> dict[str, Any] | None:
    """What the worker's Modal app runs in the environment."""
    return fake.worker.current(scene.fakes.state(), environment)


def calls(scene: Scene, since: int) -> list[str]:
    """The calls made after the first `since`, the release lock's SQL as <lock>."""
    made = [shlex.join(call) for call in scene.fakes.calls()[since:]]
    return [" ".join(lock_command(call)) if call.startswith("psql") else call for call in made]


@worker_or_not
@environments
def test_a_deploy_uploads_the_release_with_its_history_then_serves_it(
    render: Render, variant: Variant, environment: str, tmp_path: Path
) -> None:
    scene = platform(render, variant, tmp_path)
    released(scene, environment, "v1")
    first = serves(scene, environment)
    before = len(scene.fakes.calls())
    result = release(scene, "deploy", environment, "v2")
    assert result.returncode == 0, result.stdout + result.stderr
    new = deployments(scene)[-1]
    production = environment == "production"
    expected = [
        f"psql --no-psqlrc --quiet --tuples-only --no-align --command=<lock> --file=- {DATABASE}",
        f"vercel api /v13/deployments/{domain_of(environment)} --scope=team_test",
        "nox -s migrate",
        f"vercel pull --yes --environment={new['target'] or 'preview'} --cwd={BUILD}",
        f"vercel build {'--prod ' if production else ''}--cwd={BUILD}",
    ]
    if variant.features.worker:
        expected.append(
            f"uv run --directory={BUILD} --locked --no-dev modal deploy --env {environment}"
            f" --tag v2 -m {PACKAGE}.modal_app"
        )
    expected.append(switch(environment, new["url"], "--scope=team_test"))
    made = calls(scene, before)
    upload = next(call for call in made if call.startswith("vercel deploy"))
    assert [call for call in made if call != upload] == expected
    assert upload.startswith(
        f"vercel deploy --prebuilt {'--prod --skip-domain ' if production else ''}"
    )
    assert new["target"] == ("production" if production else None)
    # The history, written once with the upload: the release, and the release it replaces.
    assert new["meta"] == {
        "release": "v2",
        "previous": first,
        "revision": "0002",
        "commit": commit(scene, "v2"),
        "by": new["meta"]["by"],
    }
    assert new["meta"]["by"].endswith(")")  # user@host (pid N)
    # GET /version reports the label and commit the build was given.
    assert (new["artifact"]["version"], new["artifact"]["commit"]) == ("v2", commit(scene, "v2"))
    assert serves(scene, environment) == new["url"]
    if variant.features.worker:
        running = worker_runs(scene, environment)
        assert running is not None
        assert (running["version"], running["commit"]) == ("v2", commit(scene, "v2"))
    assert "direct-secret" not in result.stdout + result.stderr
    assert not fake.TARGET.locked(scene.fakes.state())


def test_a_deploy_builds_only_committed_files(render: Render, tmp_path: Path) -> None:
    scene = platform(render, WITHOUT_WORKER, tmp_path)
    project = scene.repo.checkout("v1")
    stale = project / BUILD / "backups" / "old.dump"
    stale.parent.mkdir(parents=True)
    stale.write_text("a dump from an earlier release")
    (project / ".env").write_text("API_KEY=local-secret\n")
    released(scene, "staging", "v1")
    assert not stale.exists()
    assert not (project / BUILD / ".env").exists()


@pytest.mark.parametrize("fail", ["nox -s migrate", "vercel build", "vercel deploy"])
def test_a_failed_step_before_the_switch_leaves_the_release_before_serving(
    render: Render, tmp_path: Path, fail: str
) -> None:
    scene = platform(render, WITH_WORKER, tmp_path)
    released(scene, "staging", "v1")
    first = serves(scene, "staging")
    scene.fakes.inject("fail", match=fail)
    result = release(scene, "deploy", "staging", "v2")
    assert result.returncode != 0
    assert f"`{' '.join(fail.split()[:2])}` failed with exit code 1." in result.stderr
    assert serves(scene, "staging") == first
    assert (worker_runs(scene) or {}).get("version") == "v1"
    assert not fake.TARGET.locked(scene.fakes.state())


def test_a_history_that_cannot_be_read_stops_the_release(render: Render, tmp_path: Path) -> None:
    scene = platform(render, WITHOUT_WORKER, tmp_path)
    released(scene, "staging", "v1")
    scene.fakes.inject("fail", match="vercel api", output="Error: Not authorized (403)")
    before = len(scene.fakes.calls())
    result = release(scene, "deploy", "staging", "v2")
    assert result.returncode != 0
    assert (
        f"`vercel api /v13/deployments/{STAGING_DOMAIN}` failed: Error: Not authorized (403)"
        in result.stderr
    )
    assert [call[0] for call in scene.fakes.calls()[before:]] == ["psql", "vercel"]


def test_an_api_that_fails_to_switch_puts_the_worker_back(render: Render, tmp_path: Path) -> None:
    scene = platform(render, WITH_WORKER, tmp_path)
    released(scene, "staging", "v1")
    first = serves(scene, "staging")
    scene.fakes.inject("fail", match="vercel alias set")
    before = len(scene.fakes.calls())
    result = release(scene, "deploy", "staging", "v2")
    assert result.returncode != 0
    assert result.stderr.rstrip().endswith(
        "`vercel alias` failed with exit code 1; v1 serves as before."
    )
    worktree = f"build/releases/{commit(scene, 'v1')[:12]}"
    assert (
        f"uv run --directory={worktree} --locked --no-dev modal deploy --env staging --tag v1"
        f" -m {PACKAGE}.modal_app"
    ) in calls(scene, before)
    assert serves(scene, "staging") == first
    running = worker_runs(scene)
    assert running is not None
    assert (running["version"], running["commit"]) == ("v1", commit(scene, "v1"))


def test_deploying_the_serving_release_again_keeps_the_release_it_replaced(
    render: Render, tmp_path: Path
) -> None:
    scene = platform(render, WITHOUT_WORKER, tmp_path)
    released(scene, "staging", "v1")
    first = serves(scene, "staging")
    released(scene, "staging", "v2", "v2")  # a re-run of the same job
    assert [d["meta"]["previous"] for d in deployments(scene)[1:]] == [first, first]
    result = release(scene, "rollback", "staging")
    assert result.returncode == 0, result.stdout + result.stderr
    assert serves(scene, "staging") == first


@worker_or_not
@environments
def test_rollback_follows_the_previous_link_and_never_migrates(
    render: Render, variant: Variant, environment: str, tmp_path: Path
) -> None:
    scene = platform(render, variant, tmp_path)
    released(scene, environment, "v1", "v2", "v3")
    second = deployments(scene)[1]["url"]
    before = len(scene.fakes.calls())
    result = release(scene, "rollback", environment)
    assert result.returncode == 0, result.stdout + result.stderr
    third = deployments(scene)[2]["url"]
    expected = [
        f"psql --no-psqlrc --quiet --tuples-only --no-align --command=<lock> --file=- {DATABASE}",
        f"vercel api /v13/deployments/{domain_of(environment)} --scope=team_test",
        f"vercel api /v13/deployments/{second} --scope=team_test",
    ]
    if variant.features.worker:
        expected.append(
            f"uv run --directory=build/releases/{commit(scene, 'v2')[:12]} --locked --no-dev"
            f" modal deploy --env {environment} --tag v2 -m {PACKAGE}.modal_app"
        )
    expected.append(switch(environment, second, "--scope=team_test"))
    assert calls(scene, before) == expected
    assert third != second
    assert serves(scene, environment) == second
    if variant.features.worker:
        assert (worker_runs(scene, environment) or {}).get("commit") == commit(scene, "v2")
    assert scene.fakes.state()["database"]["revision"] == "0002"


def test_rollback_to_a_release_by_its_label(render: Render, tmp_path: Path) -> None:
    scene = platform(render, WITH_WORKER, tmp_path)
    released(scene, "staging", "v1", "v2", "v3")
    back = release(scene, "rollback", "staging", "v1")
    assert back.returncode == 0, back.stdout + back.stderr
    assert scene.serving() == scene.everywhere("v1")
    forward = release(scene, "rollback", "staging", "v3")  # rolled back from: by its label only
    assert forward.returncode == 0, forward.stdout + forward.stderr
    assert scene.serving() == scene.everywhere("v3")
    assert serves(scene, "staging") == deployments(scene)[2]["url"]


def test_rollback_to_a_version_never_released_changes_nothing(
    render: Render, tmp_path: Path
) -> None:
    scene = platform(render, WITH_WORKER, tmp_path)
    released(scene, "staging", "v1", "v2")
    before = len(scene.fakes.calls())
    result = release(scene, "rollback", "staging", "v7")
    assert result.returncode != 0
    assert "rollback failed: v7 was never released to staging; its history knows v2, v1." in (
        result.stderr
    )
    switches = ("modal deploy", "vercel alias", "vercel promote")
    assert not [call for call in calls(scene, before) if any(s in call for s in switches)]
    assert scene.serving() == scene.everywhere("v2")


def test_a_second_release_is_refused_naming_the_first_as_postgres_keeps_its_name(
    render: Render, tmp_path: Path
) -> None:
    scene = platform(render, WITHOUT_WORKER, tmp_path)
    released(scene, "staging", "v1")
    scene.fakes.inject("pause", match="nox -s migrate", seconds=4)
    run = {"GITHUB_RUN_ID": "1234567", "GITHUB_REPOSITORY": f"acme/{'a-long-name-' * 5}"}
    started = len(scene.fakes.calls())
    first = scene.fakes.start(
        scene.repo.checkout("v2"), "deploy", "staging", "--version", "v2", env=scene.env | run
    )
    for _ in range(100):
        if ["nox", "-s", "migrate"] in scene.fakes.calls()[started:]:
            break
        time.sleep(0.05)
    second = scene.fakes.release(scene.repo.path, "rollback", "staging", env=scene.env)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert second.returncode != 0
    holder = re.search(r"staging is being released by (\S+)\. One release at a time", second.stderr)
    assert holder is not None, second.stderr
    assert len(holder.group(1)) == 63
    assert holder.group(1).startswith("...")
    assert holder.group(1).endswith("/actions/runs/1234567")


# ---------------------------------------------------------------------------------------------
# Validate tier: `vercel build` offline, and the function it builds, served

CLI_CACHE = Path(tempfile.gettempdir()) / "slipway-vercel-cli"
API_KEY = "vercel-function-test-key-0123456789abcdef"
SOCKET = ("--host=/var/run/postgresql", "--username=postgres")  # the server's own socket directory


@pytest.fixture(scope="session")
def vercel_cli(render: Render) -> Path:
    """The `vercel` that package.json pins, installed once into a cache directory; where that
    version does not install, the newest one that does here."""
    manifest = json.loads((render(WITH_WORKER) / "package.json").read_text())
    pinned = f"vercel@{manifest['devDependencies']['vercel']}"
    # An npm registry mirror may lack a dependency of the pinned CLI (vercel@64 needs sandbox@4.4.0,
    # which this machine's mirror does not have): then the newest major that installs from it,
    # whose `vercel build` also runs offline.
    newest_installable = "vercel@60.1.3"
    npm = shutil.which("npm")
    assert npm, "the validate tier needs Node.js and npm to install the Vercel CLI"
    failures = []
    for package in dict.fromkeys([pinned, newest_installable]):
        prefix = CLI_CACHE / package
        cli = prefix / "node_modules/.bin/vercel"
        if cli.exists():
            return cli
        result = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return cli
        failures.append(f"npm install {package}:\n{result.stdout}{result.stderr}")
    raise AssertionError("\n".join(failures))


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


def the_function(built: Path) -> Path:
    """The one function `vercel build` made (named after the preset: fastapi.func)."""
    functions = list((built / ".vercel/output/functions").glob("*.func"))
    assert len(functions) == 1, functions
    return functions[0]


@variants
@pytest.mark.validate
def test_vercel_builds_a_python_function_with_the_locked_dependencies(
    render: Render, built: Build, variant: Variant
) -> None:
    project = render(variant)
    python = yaml.safe_load((project / ".copier-answers.yml").read_text())["python_version"]
    function = the_function(built(variant))
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
    function = the_function(built)
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
