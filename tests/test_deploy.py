"""Every target's `nox -s deploy` and `nox -s rollback`: usage, dry runs, prerequisites."""

from __future__ import annotations

import pytest

from .conftest import Render
from .deploy import commands, dry_run, nox, requests
from .matrix import DEPLOY_TARGETS, full_variant

ENVIRONMENTS = ["staging", "production"]

targets = pytest.mark.parametrize("deploy_target", DEPLOY_TARGETS)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


@targets
@environments
def test_deploy_dry_run_prints_a_plan(render: Render, deploy_target: str, environment: str) -> None:
    plan = dry_run(
        render(full_variant(deploy_target)), "deploy", environment, "--version", "v1.2.3"
    )
    assert f"Deploying v1.2.3 to {environment}" in plan
    assert "dry run: nothing will change" in plan
    assert commands(plan) or requests(plan)
    assert plan.rstrip().endswith(f"deploy of {environment} planned.")


@targets
@environments
def test_rollback_dry_run_warns_about_the_schema(
    render: Render, deploy_target: str, environment: str
) -> None:
    plan = dry_run(render(full_variant(deploy_target)), "rollback", environment)
    assert "migrations that ran are not reverted" in plan
    assert "nox -s migrate -- downgrade <revision>" in plan
    assert commands(plan) or requests(plan)
    assert plan.rstrip().endswith(f"rollback of {environment} planned.")


@targets
@pytest.mark.parametrize("session", ["deploy", "rollback"])
def test_real_run_stops_on_missing_prerequisites(
    render: Render, deploy_target: str, session: str
) -> None:
    posargs = ["staging", "--version", "v1"] if session == "deploy" else ["staging"]
    result = nox(render(full_variant(deploy_target)), session, *posargs)
    assert result.returncode != 0
    # nox relays the session's stderr on its stdout
    failure = next(
        line for line in result.stdout.splitlines() if line.startswith(f"{session} failed:")
    )
    assert "is not installed or not on PATH" in failure or "is not set" in failure
    assert commands(result.stdout) == []
    assert requests(result.stdout) == []


@targets
@pytest.mark.parametrize("posargs", [[], ["prod"], ["staging", "--bogus"]])
def test_usage_errors(render: Render, deploy_target: str, posargs: list[str]) -> None:
    result = nox(render(full_variant(deploy_target)), "deploy", *posargs)
    assert result.returncode != 0
    assert "usage:" in result.stdout  # nox relays the session's stderr on its stdout
