"""Static validation of every variant with the tools of each ecosystem (the `validate` session)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Render
from .containers import PROMETHEUS_IMAGE, run_tool
from .matrix import VARIANTS, Variant

pytestmark = pytest.mark.validate
variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)

# yamllint: GitHub's `on:` is a key, not a boolean; long lines are the formatters' business;
# Copier writes .copier-answers.yml with its lists unindented (each file keeps to one style).
YAMLLINT_CONFIG = (
    "{extends: default, rules: {truthy: {check-keys: false}, line-length: disable,"
    " document-start: disable, comments: {min-spaces-from-content: 1},"
    " indentation: {indent-sequences: consistent}}}"
)


def tool(name: str) -> str:
    """The path of a validator; the validate dependency group installs them all."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: run the tests with `nox -s validate`"
    return path


def check(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a validator; fail the test with its output unless it succeeds."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def workflows(project: Path) -> list[Path]:
    return sorted((project / ".github/workflows").glob("*.yml"))


@variants
def test_dockerfile_passes_hadolint(render: Render, variant: Variant) -> None:
    check(tool("hadolint"), "--failure-threshold", "info", str(render(variant) / "Dockerfile"))


@variants
def test_workflows_pass_actionlint_and_shellcheck(render: Render, variant: Variant) -> None:
    project = render(variant)
    tool("shellcheck")  # actionlint runs it on every `run:` block when it is on PATH
    check(tool("actionlint"), *map(str, workflows(project)), cwd=project)


def test_the_vm_backup_script_passes_shellcheck(render: Render) -> None:
    vm = next(variant for variant in VARIANTS if variant.deploy_target == "vm")
    check(tool("shellcheck"), "--shell=sh", str(render(vm) / "deploy/vm/backup/backup.sh"))


@variants
def test_github_files_match_their_schemas(render: Render, variant: Variant) -> None:
    project = render(variant)
    validator = tool("check-jsonschema")
    check(validator, "--builtin-schema", "vendor.github-workflows", *map(str, workflows(project)))
    dependabot = str(project / ".github/dependabot.yml")
    check(validator, "--builtin-schema", "vendor.dependabot", dependabot)


@variants
def test_local_compose_file_is_valid(render: Render, variant: Variant) -> None:
    project = render(variant)
    compose = str(project / "compose.yaml")
    check(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", compose)
    config = check(tool("docker-compose"), "-f", compose, "--profile", "app", "config", "--quiet")
    assert config == ""


@variants
def test_yaml_passes_yamllint(render: Render, variant: Variant) -> None:
    project = render(variant)
    files = [p for p in project.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file()]
    check(tool("yamllint"), "--strict", "-d", YAMLLINT_CONFIG, *map(str, files))


@pytest.mark.parametrize(
    "variant", [v for v in VARIANTS if v.topology != "serverless"], ids=lambda v: v.id
)
def test_alert_rules_pass_promtool_and_their_unit_tests(render: Render, variant: Variant) -> None:
    mounts = {render(variant) / "monitoring": "/monitoring"}
    run_tool(
        PROMETHEUS_IMAGE, "/bin/promtool", "check", "rules", "/monitoring/alerts.yml", mounts=mounts
    )
    # promtool reads the rule files a test names relative to the test file.
    run_tool(
        PROMETHEUS_IMAGE,
        "/bin/promtool",
        "test",
        "rules",
        "/monitoring/alerts.test.yml",
        mounts=mounts,
    )
