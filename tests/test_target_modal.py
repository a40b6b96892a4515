"""The modal target: releases of the Modal app, with their history and lock on a Modal volume.

The fast tier reads the plans and runs real releases against the stateful fake of Modal
(tests/fakes/modal.py), whose web endpoints answer from this process. The validate tier installs
each project the way its Modal image does and imports the Modal app module there, without a Modal
token.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import Render
from .deploy import commands, dry_run, requests
from .fakes import modal as fake
from .matrix import Variant, full_variant, variants_of
from .test_release_scenarios import Scene, git, scene

ENVIRONMENTS = ["staging", "production"]
APP = "my-service"
MODULE = "my_service.modal_app"
VOLUME = "my-service-releases"
NEEDS = (
    "needs: `modal` on PATH, `git` on PATH, `uv` on PATH, MODAL_TOKEN_ID set, "
    "MODAL_TOKEN_SECRET set"
)

environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


# ---------------------------------------------------------------------------------------------
# Plans


def planned(plan: str) -> list[str]:
    """The commands of a plan, with the temporary files it names as <tmp>/NAME."""
    temporary = re.compile(re.escape(tempfile.gettempdir()) + r"/\w+/")
    return [temporary.sub("<tmp>/", command) for command in commands(plan)]


def volume(environment: str, command: str, *arguments: str) -> str:
    return " ".join(["modal", "volume", command, "--env", environment, *arguments])


def held(environment: str, *steps: str) -> list[str]:
    """A release's commands: the lease and the history around `steps`, the record at the end."""
    return [
        volume(environment, "create", VOLUME),
        volume(environment, "put", VOLUME, "<tmp>/lock.json", "lock.json"),
        volume(environment, "get", VOLUME, "releases.jsonl", "<tmp>/releases.jsonl"),
        *steps,
        f"modal app history {APP} --env {environment} --json",
        f"modal function info {APP}/web --env {environment} --json",
        volume(environment, "put", "--force", VOLUME, "<tmp>/releases.jsonl", "releases.jsonl"),
        volume(environment, "rm", VOLUME, "lock.json"),
    ]


@environments
def test_deploy_migrates_deploys_the_tagged_version_checks_it_then_records_it(
    render: Render, environment: str
) -> None:
    plan = dry_run(render(full_variant("modal")), "deploy", environment, "--version", "v1.2.3")
    assert NEEDS in plan
    assert planned(plan) == held(
        environment,
        f"modal run --env {environment} -m {MODULE}::migrate",
        f"modal deploy --env {environment} --tag v1.2.3 -m {MODULE}",
    )
    assert requests(plan) == [
        "GET $WEB_URL/version  (until it reports image_tag v1.2.3)",
        "GET $WEB_URL/health/ready  (until it answers 200)",
    ]
    assert "one release at a time: lock.json on the Modal volume my-service-releases" in plan


@environments
@pytest.mark.parametrize("version", [None, "v1.0.0"])
def test_rollback_deploys_the_commit_of_the_release_again_and_never_migrates(
    render: Render, environment: str, version: str | None
) -> None:
    posargs = [version] if version else []
    plan = dry_run(render(full_variant("modal")), "rollback", environment, *posargs)
    label = version or "<previous release>"
    worktree = "build/releases/<its commit>"
    uv = ["uv", "run", f"--directory={worktree}", "--locked", "--no-dev"]
    deploy = ["modal", "deploy", "--env", environment, "--tag", label, "-m", MODULE]
    assert planned(plan) == held(
        environment,
        shlex.join(["git", "worktree", "add", "--force", "--detach", worktree, "<its commit>"]),
        shlex.join([*uv, *deploy]),
        shlex.join(["git", "worktree", "remove", "--force", worktree]),
    )
    assert f"GET $WEB_URL/version  (until it reports image_tag {label})" in requests(plan)


@pytest.mark.parametrize(
    "variant",
    [*variants_of("modal"), *(v for v in variants_of("vercel") if v.features.worker)],
    ids=lambda variant: variant.id,
)
def test_every_variant_releases_its_own_app(render: Render, variant: Variant) -> None:
    script = (render(variant) / "scripts/deploy/modal_releases.py").read_text()
    assert f'APP = "{APP}"\nMODULE = "{MODULE}"\n' in script


# ---------------------------------------------------------------------------------------------
# Real releases, against the fake Modal


@pytest.fixture
def modal(render: Render, tmp_path: Path) -> Scene:
    """The fake Modal, and the project's repository: commits v1, v2 (+ a migration) and v3."""
    return scene(render, "modal", tmp_path)


def commit(modal: Scene, version: str) -> str:
    return git(modal.repo.path, "rev-parse", f"{version}^{{commit}}").strip()


def deployments(modal: Scene) -> list[dict[str, Any]]:
    """The app's deployments in staging, oldest first."""
    app = fake.environment(modal.fakes.state(), "staging")["apps"][APP]
    found: list[dict[str, Any]] = app["deployments"]
    return found


def history(modal: Scene) -> list[dict[str, Any]]:
    return fake.TARGET.history(modal.fakes.state())


def modal_calls(modal: Scene, since: int) -> list[str]:
    """The Modal CLI calls (direct, or through `uv run`) made after the first `since` calls."""
    return [shlex.join(call) for call in modal.fakes.calls()[since:] if call[0] in ("modal", "uv")]


def test_deploy_records_the_release_once_the_endpoint_serves_it(modal: Scene) -> None:
    modal.deploy("v1")
    before = len(modal.fakes.calls())
    result = modal.release("deploy", "v2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call.split()[:3] for call in modal_calls(modal, before)] == [
        ["modal", "volume", "create"],
        ["modal", "volume", "put"],
        ["modal", "volume", "get"],
        ["modal", "run", "--env"],
        ["modal", "deploy", "--env"],
        ["modal", "app", "history"],
        ["modal", "function", "info"],
        ["modal", "volume", "put"],
        ["modal", "volume", "rm"],
    ]
    # GET /version reports the label and the commit that the deploy gave the app
    deployed = deployments(modal)[-1]
    assert (deployed["tag"], deployed["artifact"]["version"]) == ("v2", "v2")
    assert deployed["artifact"]["commit"] == commit(modal, "v2")
    entry = history(modal)[-1]
    assert {k: entry[k] for k in ("number", "action", "version", "artifacts", "previous")} == {
        "number": 2,
        "action": "deploy",
        "version": "v2",
        "artifacts": {"app": "v2"},
        "previous": 1,
    }
    assert (entry["revision"], entry["commit"]) == ("0002", commit(modal, "v2"))
    assert modal.fakes.state()["database"]["revision"] == "0002"
    assert not fake.TARGET.locked(modal.fakes.state())


def test_a_failed_migration_deploys_nothing(modal: Scene) -> None:
    modal.deploy("v1")
    modal.fakes.inject("fail", match="::migrate", output="Error: could not connect")
    result = modal.release("deploy", "v2")
    assert result.returncode != 0
    assert "deploy failed: `modal run` failed with exit code 1." in result.stderr
    assert [d["tag"] for d in deployments(modal)] == ["v1"]
    assert modal.recorded() == [("deploy", "v1")]
    assert not fake.TARGET.locked(modal.fakes.state())


def test_a_release_the_endpoint_never_serves_is_replaced_by_the_one_before(modal: Scene) -> None:
    modal.deploy("v1")
    modal.fakes.update(lambda state: state["modal"].update(broken=["v2"]))
    modal.env["MODAL_SERVE_TIMEOUT"] = "1"
    before = len(modal.fakes.calls())
    result = modal.release("deploy", "v2")
    assert result.returncode != 0
    assert result.stderr.rstrip().endswith("did not happen within 1s; v1 serves as before.")
    worktree = f"build/releases/{commit(modal, 'v1')[:12]}"
    assert (
        f"uv run --directory={worktree} --locked --no-dev modal deploy --env staging --tag v1 "
        f"-m {MODULE}"
    ) in modal_calls(modal, before)
    assert [d["tag"] for d in deployments(modal)] == ["v1", "v2", "v1"]
    assert deployments(modal)[-1]["artifact"]["commit"] == commit(modal, "v1")
    assert modal.serving() == {"app": "v1"}
    assert modal.recorded() == [("deploy", "v1")]  # a release that failed is not recorded
    assert not (modal.repo.path / worktree).exists()


def test_a_first_release_that_fails_stops_the_app(modal: Scene) -> None:
    modal.fakes.update(lambda state: state.setdefault("modal", {}).update(broken=["v1"]))
    modal.env["MODAL_SERVE_TIMEOUT"] = "1"
    result = modal.release("deploy", "v1")
    assert result.returncode != 0
    assert "nothing serves as before." in result.stderr
    assert modal.serving() == {"app": None}
    assert modal.recorded() == []


def test_a_first_release_that_fails_leaves_deployments_made_before_releases_were_recorded(
    modal: Scene,
) -> None:
    earlier = fake.artifact(modal.repo.checkout("v1"), "0.9")
    deployment = {"version": 1, "tag": None, "commit": "", "artifact": earlier}
    deployment |= {"time_deployed": "2026-01-01T10:00:00+00:00", "client": "1.5.0"}
    deployment |= {"deployed_by": "someone"}
    app = {"deployments": [deployment], "stopped": False}
    modal.fakes.update(lambda state: fake.environment(state, "staging")["apps"].update({APP: app}))
    modal.fakes.update(lambda state: state["modal"].update(broken=["v1"]))
    modal.env["MODAL_SERVE_TIMEOUT"] = "1"
    result = modal.release("deploy", "v1")
    assert result.returncode != 0
    assert "no release was recorded before; the app runs v2." in result.stderr
    assert not [call for call in modal.fakes.calls() if call[:3] == ["modal", "app", "stop"]]
    assert modal.recorded() == []


def test_rollback_deploys_the_earlier_commit_again_and_records_it(modal: Scene) -> None:
    modal.deploy("v1", "v2")
    before = len(modal.fakes.calls())
    result = modal.release("rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = modal_calls(modal, before)
    assert not [call for call in calls if " run --env" in call or "app rollback" in call]
    deployed = deployments(modal)[-1]
    assert (deployed["tag"], deployed["artifact"]["commit"]) == ("v1", commit(modal, "v1"))
    assert modal.fakes.state()["database"]["revision"] == "0002"  # kept: v1 runs on it
    entry = history(modal)[-1]
    assert {k: entry[k] for k in ("action", "version", "artifacts", "previous", "restores")} == {
        "action": "rollback",
        "version": "v1",
        "artifacts": {"app": "v3"},  # the Modal version the redeploy became
        "previous": 2,
        "restores": 1,
    }
    assert not fake.TARGET.locked(modal.fakes.state())


def test_rollback_to_a_release_by_its_label(modal: Scene) -> None:
    modal.deploy("v1", "v2", "v3")
    result = modal.release("rollback", "v1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert modal.serving() == {"app": "v1"}
    assert modal.recorded()[-1] == ("rollback", "v1")


def test_rollback_to_a_version_never_released_changes_nothing(modal: Scene) -> None:
    modal.deploy("v1", "v2")
    before = len(modal.fakes.calls())
    result = modal.release("rollback", "v0.9.0")
    assert result.returncode != 0
    assert (
        "rollback failed: v0.9.0 was never released to staging; its history knows v2, v1."
        in result.stderr
    )
    assert not [call for call in modal_calls(modal, before) if " deploy " in call]
    assert modal.serving() == {"app": "v2"}


def test_a_label_modal_cannot_tag_is_refused_before_anything_changes(modal: Scene) -> None:
    project = modal.repo.checkout("v1")
    result = modal.fakes.release(
        project, "deploy", "staging", "--version", "v1 (beta)", env=modal.env
    )
    assert result.returncode != 0
    assert "'v1 (beta)' is not a Modal deployment tag" in result.stderr
    assert modal.fakes.calls() == []


def test_a_release_under_way_is_named_and_left_alone(modal: Scene) -> None:
    modal.deploy("v1")
    lease = {
        "holder": "ci in https://github.com/acme/svc/actions/runs/42",
        "host": "runner-7",
        "pid": 4242,
        "action": "deploy",
        "version": "v9",
        "since": "2026-01-01T10:00:00+00:00",
        "expires": "2999-01-01T00:00:00+00:00",
    }
    modal.fakes.update(
        lambda state: fake.environment(state, "staging")["volumes"][VOLUME].update(
            {"lock.json": json.dumps(lease)}
        )
    )
    result = modal.release("deploy", "v2")
    assert result.returncode != 0
    assert (
        "staging is being released by ci in https://github.com/acme/svc/actions/runs/42, deploy "
        "of v9 since 2026-01-01T10:00:00+00:00." in result.stderr
    )
    assert fake.volume_files(modal.fakes.state())["lock.json"] == json.dumps(lease)
    assert [d["tag"] for d in deployments(modal)] == ["v1"]


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
caps = {
    name: getattr(modal_app, name)
    for name in ("MIGRATION_CONNECTIONS", "WEB_CONTAINERS", "WEB_POOL_SIZE", "JOB_CONTAINERS")
    if hasattr(modal_app, name)
}
found = {
    "app": modal_app.app.name,
    "version": version("my-service"),
    "functions": functions,
    "caps": caps,
}
print(json.dumps(found))
"""

# The connections a budget of 41 leaves each function's containers: one for migrations; web
# containers of 5 take the rest, or three quarters of it beside the jobs' one each.
BUDGET = 41
EXPECTED_CAPS = {
    ("modal", False): {"MIGRATION_CONNECTIONS": 1, "WEB_CONTAINERS": 8, "WEB_POOL_SIZE": 5},
    ("modal", True): {
        "MIGRATION_CONNECTIONS": 1,
        "WEB_CONTAINERS": 6,
        "WEB_POOL_SIZE": 5,
        "JOB_CONTAINERS": 10,
    },
    ("vercel", True): {"MIGRATION_CONNECTIONS": 1, "JOB_CONTAINERS": 40},
}

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

    def inspect(budget: int) -> subprocess.CompletedProcess[str]:
        budgeted = env | {"DATABASE_CONNECTION_BUDGET": str(budget)}
        return subprocess.run(
            [str(python), "-c", INSPECT],
            cwd=home,
            env=budgeted,
            capture_output=True,
            text=True,
            check=False,
        )

    result = inspect(BUDGET)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    caps = found.pop("caps")

    expected: dict[str, dict[str, Any]] = {
        "migrate": {"web": False, "retries": None, "timeout": 1800}
    }
    if variant.deploy_target == "modal":
        expected["web"] = {"web": True, "retries": None, "timeout": 300}
    if variant.features.worker:
        expected["analyze_document"] = {"web": False, "retries": 3, "timeout": 60}
    assert found == {"app": APP, "version": "0.1.0", "functions": expected}

    # Every container of every function at once holds at most the budget's connections.
    most = caps["MIGRATION_CONNECTIONS"] + caps.get("JOB_CONTAINERS", 0)
    most += caps.get("WEB_CONTAINERS", 0) * caps.get("WEB_POOL_SIZE", 0)
    assert most <= BUDGET, caps
    assert caps == EXPECTED_CAPS[variant.deploy_target, variant.features.worker]
    too_small = inspect(budget=1)
    assert too_small.returncode != 0
    assert "DATABASE_CONNECTION_BUDGET=1 leaves no room for a container of" in too_small.stderr
