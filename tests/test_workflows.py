"""The GitHub workflows of every variant: releases gated on CI and labelled by tag or commit, and
the platform CLIs installed from files that Dependabot keeps current.

The fast tier reads the workflows and pins; it also checks a checkout made the way
actions/checkout makes it for a push, which is where most targets take a release's label from.
The validate tier runs hadolint and npm on the pin files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Render
from .deploy import nox
from .matrix import DEPLOY_TARGETS, VARIANTS, Variant, full_variant, variants_of
from .repos import git

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)

CI = "./.github/workflows/ci.yml"
CHECKOUT = "actions/checkout@"
# The targets whose Deploy workflow builds and pushes an image (copier.yml: pushes_image).
IMAGE_TARGETS = {"vm", "k8s"}
# The npm package of each platform CLI that package.json pins.
NPM_CLIS = {"vercel": "vercel", "railway": "@railway/cli"}
KUBECTL = ".github/kubectl.Dockerfile"


def workflow(project: Path, name: str) -> dict[str, Any]:
    """A workflow of the project, parsed."""
    parsed: dict[Any, Any] = yaml.safe_load((project / f".github/workflows/{name}.yml").read_text())
    return parsed


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The events of a workflow (YAML 1.1 reads the key `on` as True)."""
    events = workflow.get("on", workflow.get(True))
    if isinstance(events, str):
        return {events: None}
    if isinstance(events, list):
        return dict.fromkeys(events)
    assert isinstance(events, dict)
    return events


def release_job(project: Path, name: str) -> dict[str, Any]:
    """The job of the deploy or rollback workflow that runs `nox -s deploy|rollback`."""
    job: dict[str, Any] = workflow(project, name)["jobs"][name]
    return job


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def runs(job: dict[str, Any]) -> str:
    """Every `run:` script of a job, one after the other."""
    return "\n".join(step["run"] for step in job["steps"] if "run" in step)


def release_step(job: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in job["steps"] if "nox -s" in s.get("run", ""))
    return step


# ---------------------------------------------------------------------------------------------
# Gates


@variants
def test_ci_checks_pull_requests_and_is_what_the_deploy_workflow_calls(
    render: Render, variant: Variant
) -> None:
    ci = workflow(render(variant), "ci")
    # Pushes get CI through the Deploy workflow: a `push` trigger here would run it twice.
    assert set(triggers(ci)) == {"pull_request", "workflow_call"}
    jobs = ci["jobs"]
    assert {"lint", "tests", "image"} <= set(jobs)
    # No job is skipped for a push or a tag: what deploys is what CI checked.
    assert [name for name, job in jobs.items() if "if" in job] == []


@variants
def test_deploys_of_main_and_of_tags_wait_for_ci_to_pass(render: Render, variant: Variant) -> None:
    deploy = workflow(render(variant), "deploy")
    assert triggers(deploy) == {"push": {"branches": ["main"], "tags": ["v*"]}}
    jobs = deploy["jobs"]
    assert jobs["ci"] == {"uses": CI}
    released = {"image", "deploy"} if variant.deploy_target in IMAGE_TARGETS else {"deploy"}
    assert set(jobs) == {"ci"} | released
    for name in released:
        assert "ci" in needs(jobs[name]), name
        # A condition such as always() would run the job after CI failed.
        assert "if" not in jobs[name], name
    if "image" in released:
        assert "image" in needs(jobs["deploy"])


@variants
def test_deploys_and_rollbacks_of_an_environment_run_one_at_a_time(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    for job in (release_job(project, "deploy"), release_job(project, "rollback")):
        assert job["concurrency"] == {
            "group": f"deploy-{job['environment']}",
            "cancel-in-progress": False,
        }


@variants
def test_rollback_runs_by_hand_with_every_commit_and_without_waiting_for_ci(
    render: Render, variant: Variant
) -> None:
    rollback = workflow(render(variant), "rollback")
    assert set(triggers(rollback)) == {"workflow_dispatch"}
    assert list(rollback["jobs"]) == ["rollback"]
    job = rollback["jobs"]["rollback"]
    assert needs(job) == []
    checkouts = [step for step in job["steps"] if step.get("uses", "").startswith(CHECKOUT)]
    # An earlier release may be rebuilt from its own commit.
    assert [step["with"]["fetch-depth"] for step in checkouts] == [0]


# ---------------------------------------------------------------------------------------------
# Release labels: v1.2.3 for a tag push, sha-<7 hex> for a push to main

# docker/metadata-action's default priorities (src/tag.ts); its `version` output is the value of
# the highest-priority tag that applies to the event.
METADATA_PRIORITIES = {"schedule": 1000, "semver": 900, "pep440": 900, "match": 800, "edge": 700}
METADATA_PRIORITIES |= {"ref": 600, "raw": 200, "sha": 100}


@pytest.mark.parametrize(
    "variant",
    [full_variant(target) for target in sorted(IMAGE_TARGETS)],
    ids=lambda variant: variant.id,
)
def test_the_image_job_labels_the_release(render: Render, variant: Variant) -> None:
    jobs = workflow(render(variant), "deploy")["jobs"]
    image = jobs["image"]
    meta = next(step for step in image["steps"] if step.get("id") == "meta")
    tags = [
        dict(part.split("=", 1) for part in line.split(","))
        for line in meta["with"]["tags"].split()
    ]
    ranked = sorted(
        tags, key=lambda tag: -int(tag.get("priority", METADATA_PRIORITIES[tag["type"]]))
    )
    # A tag push: the tag's own name, ahead of the semver patterns (which drop the "v").
    assert (ranked[0]["type"], ranked[0].get("event")) == ("ref", "tag")
    # A push to main: only type=sha applies, with its default "sha-" prefix and 7-digit form.
    assert {"type": "sha"} in tags
    tag_only = [
        tag for tag in tags if tag["type"] in {"semver", "pep440"} or tag.get("event") == "tag"
    ]
    assert len(tag_only) == len(tags) - 1
    assert image["outputs"]["version"] == "${{ steps.meta.outputs.version }}"
    build = next(step for step in image["steps"] if "build-args" in step.get("with", {}))
    assert "IMAGE_TAG=${{ steps.meta.outputs.version }}" in build["with"]["build-args"].splitlines()
    deploy_env = release_step(jobs["deploy"])["env"]
    assert deploy_env["IMAGE_TAG"] == "${{ needs.image.outputs.version }}"


def checkout_of_a_push(origin: Path, ref: str, destination: Path, *, full: bool) -> Path:
    """Check `ref` of `origin` out as actions/checkout does for a push: with fetch-depth 0 (`full`)
    every branch and tag; with its default inputs (fetch-depth 1, no fetch-tags) a tag by its own
    name, a branch without tags (getRefSpec in its src/ref-helper.ts)."""
    destination.mkdir()
    git(destination, "init", "-q")
    git(destination, "remote", "add", "origin", origin.as_uri())
    if full:
        git(destination, "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
        git(destination, "checkout", "-q", "--force", ref.removeprefix("refs/heads/"))
    elif ref.startswith("refs/tags/"):
        git(destination, "fetch", "-q", "--no-tags", "--depth=1", "origin", f"+{ref}:{ref}")
        git(destination, "checkout", "-q", "--force", ref)
    else:
        branch = ref.removeprefix("refs/heads/")
        remote = f"refs/remotes/origin/{branch}"
        git(destination, "fetch", "-q", "--no-tags", "--depth=1", "origin", f"+{ref}:{remote}")
        git(destination, "checkout", "-q", "--force", "-B", branch, remote)
    return destination


@pytest.mark.parametrize(
    "variant",
    [full_variant(target) for target in DEPLOY_TARGETS if target not in IMAGE_TARGETS],
    ids=lambda variant: variant.id,
)
@pytest.mark.parametrize("ref", ["refs/tags/v1.2.3", "refs/heads/main"])
def test_without_an_image_the_checkout_labels_the_release(
    render: Render, variant: Variant, ref: str, tmp_path: Path
) -> None:
    project = render(variant)
    job = release_job(project, "deploy")
    fetch = next(step for step in job["steps"] if step.get("uses", "").startswith(CHECKOUT))
    # A failed Modal release redeploys the commit before it: those checkouts take every commit.
    full = fetch["with"].pop("fetch-depth", None) == 0
    uses_modal = variant.deploy_target == "modal" or (
        variant.deploy_target == "vercel" and variant.features.worker
    )
    assert full == uses_modal
    assert set(fetch["with"]) <= {"persist-credentials"}  # as simulated below
    release = release_step(job)
    assert "IMAGE_TAG" not in release["env"]
    assert "--version" not in release["run"]
    origin = tmp_path / "origin"
    shutil.copytree(project, origin)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "Release")
    # Tagged on main: a push of main must still be labelled by its commit, as images are.
    git(origin, "tag", "-a", "v1.2.3", "-m", "v1.2.3")
    commit = git(origin, "rev-parse", "--short=7", "HEAD").strip()

    checkout = checkout_of_a_push(origin, ref, tmp_path / "checkout", full=full)
    plan = nox(checkout, "deploy", "staging", "--dry-run").stdout

    announced = re.search(r"^Deploying (\S+) to staging", plan, re.MULTILINE)
    assert announced, plan
    # A full history has the tags too: a commit that carries one is labelled by it.
    tagged = ref.startswith("refs/tags/") or full
    assert announced[1] == ("v1.2.3" if tagged else f"sha-{commit}")


# ---------------------------------------------------------------------------------------------
# Pinned CLIs


@variants
def test_workflows_install_the_platform_cli_from_its_pin_file(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    for name in ("deploy", "rollback"):
        script = runs(release_job(project, name))
        # No version in a workflow: Dependabot updates pin files, not shell commands.
        assert not re.search(r"--global|\bcurl\b|[\w/-]@v?\d|==\d", script), name
        target = variant.deploy_target
        if target in NPM_CLIS:
            if (project / "package-lock.json").exists():
                assert re.search(r"^npm ci --no-audit --no-fund$", script, re.M), name
            else:  # npm ci once the user commits the lock file npm writes
                ci, install = "npm ci --no-audit --no-fund", "npm install --no-audit --no-fund"
                locked = f"if [ -f package-lock.json ]; then {ci}; else {install}; fi\n"
                assert locked in script, name
            assert 'echo "$PWD/node_modules/.bin" >> "$GITHUB_PATH"' in script, name
        elif target == "k8s":
            assert f'docker build --output "$RUNNER_TEMP/kubectl" - < {KUBECTL}\n' in script, name
            assert 'echo "$RUNNER_TEMP/kubectl" >> "$GITHUB_PATH"' in script, name
        elif target == "modal":
            assert "uv sync --locked --no-dev\n" in script, name


@pytest.mark.parametrize(
    "variant",
    [variant for target in NPM_CLIS for variant in variants_of(target)],
    ids=lambda variant: variant.id,
)
def test_package_json_pins_the_platform_cli_exactly(render: Render, variant: Variant) -> None:
    project = render(variant)
    manifest = json.loads((project / "package.json").read_text())
    assert manifest["private"] is True
    cli = NPM_CLIS[variant.deploy_target]
    assert list(manifest["devDependencies"]) == [cli]
    version = manifest["devDependencies"][cli]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    if variant.deploy_target == "railway":
        # Its install script downloads the binary; npm runs only allowed ones.
        assert manifest["allowScripts"] == {cli: True}
        lock = json.loads((project / "package-lock.json").read_text())
        assert lock["name"] == manifest["name"]
        root = lock["packages"][""]
        assert (root["name"], root["devDependencies"]) == (manifest["name"], {cli: version})
        assert lock["packages"][f"node_modules/{cli}"]["version"] == version
        assert [
            name for name, entry in lock["packages"].items() if name and "integrity" not in entry
        ] == []


@pytest.mark.parametrize("variant", variants_of("k8s"), ids=lambda variant: variant.id)
def test_kubectl_comes_from_the_kubernetes_image_at_a_pinned_version(
    render: Render, variant: Variant
) -> None:
    dockerfile = (render(variant) / KUBECTL).read_text()
    images = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(images) == 2
    assert re.fullmatch(r"registry\.k8s\.io/kubectl:v\d+\.\d+\.\d+", images[0])
    assert images[1] == "scratch"  # the build's output is the binary alone
    assert "\nCOPY --from=kubectl /bin/kubectl /kubectl\n" in dockerfile


@variants
def test_dependabot_updates_every_pin_file(render: Render, variant: Variant) -> None:
    project = render(variant)
    config = yaml.safe_load((project / ".github/dependabot.yml").read_text())
    covered = {
        (update["package-ecosystem"], directory)
        for update in config["updates"]
        for directory in update.get("directories", [update.get("directory")])
    }
    expected = {("uv", "/"), ("github-actions", "/")}
    for path in project.rglob("*"):
        # Dependabot's docker updater reads every file whose name contains "dockerfile".
        if "dockerfile" in path.name.lower():
            folder = path.parent.relative_to(project).as_posix()
            expected.add(("docker", "/" if folder == "." else f"/{folder}"))
    if (project / "package.json").exists():
        expected.add(("npm", "/"))
    assert covered == expected
    assert all(update["schedule"] == {"interval": "weekly"} for update in config["updates"])


# ---------------------------------------------------------------------------------------------
# Validate tier: the pin files with their own tools


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: run the tests with `nox -s validate`"
    return path


@pytest.mark.validate
@pytest.mark.parametrize("variant", [full_variant("k8s")], ids=lambda variant: variant.id)
def test_kubectl_dockerfile_passes_hadolint(render: Render, variant: Variant) -> None:
    command = [tool("hadolint"), "--failure-threshold", "info", str(render(variant) / KUBECTL)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.validate
@pytest.mark.parametrize("variant", [full_variant("railway")], ids=lambda variant: variant.id)
def test_the_railway_cli_installs_from_its_lock(
    render: Render, variant: Variant, tmp_path: Path
) -> None:
    project = render(variant)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(project / name, tmp_path / name)
    # Without the install script, which downloads the binary from GitHub: npm ci alone fails
    # when the lock and package.json disagree or a locked package is not in the registry.
    command = [tool("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "node_modules/.bin/railway").exists()
