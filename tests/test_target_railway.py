"""The railway target: config-as-code per service, `railway up` releases, GraphQL rollbacks."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Render
from .deploy import BARE_ENV, commands, dry_run, nox, requests
from .matrix import QUESTIONS, Variant, variants_of

VARIANTS = variants_of("railway")
WITH_WORKER = next(v for v in VARIANTS if v.features.worker)
WITHOUT_WORKER = next(v for v in VARIANTS if not v.features.worker)
ENVIRONMENTS = ["staging", "production"]
API_URL = "https://backboard.railway.com/graphql/v2"
TOKEN = "project-token-0123456789"

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


def services(variant: Variant) -> list[str]:
    """The Railway services a project of `variant` runs, in release order."""
    return ["api", "worker"] if variant.features.worker else ["api"]


def configs(variant: Variant) -> dict[str, str]:
    """Each Railway service and its config-as-code file."""
    files = {"api": "railway.json", "worker": "railway.worker.json"}
    return {service: files[service] for service in services(variant)}


# ---------------------------------------------------------------------------------------------
# Config as code

# There is no offline schema for railway.json: these are the fields documented at
# https://docs.railway.com/config-as-code/reference, with the type or the values each accepts.
# Deprecated ones (the NIXPACKS builder and its nixpacks* fields) are left out on purpose. The
# teardown seconds are numbers: Railway's parser rejects the strings the reference shows
# (https://github.com/railwayapp/docs/issues/1243).
SCHEMA_URL = "https://railway.com/railway.schema.json"
BUILD: dict[str, type | frozenset[str]] = {
    "builder": frozenset({"RAILPACK", "DOCKERFILE"}),
    "watchPatterns": list,
    "buildCommand": str,
    "dockerfilePath": str,
    "railpackVersion": str,
}
DEPLOY: dict[str, type | frozenset[str]] = {
    "startCommand": str,
    "preDeployCommand": list,
    "multiRegionConfig": dict,
    "healthcheckPath": str,
    "healthcheckTimeout": int,
    "restartPolicyType": frozenset({"ON_FAILURE", "ALWAYS", "NEVER"}),
    "restartPolicyMaxRetries": int,
    "cronSchedule": str,
    "overlapSeconds": int,
    "drainingSeconds": int,
}
SECTIONS = {"build": BUILD, "deploy": DEPLOY}


def config_problems(config: dict[str, Any]) -> list[str]:
    """Everything in a railway.json that Railway's reference does not document."""
    problems = [] if config.get("$schema") == SCHEMA_URL else [f"$schema is not {SCHEMA_URL}"]
    overrides = list(config.get("environments", {}).values())
    for layer in [config, *overrides]:
        known = {*SECTIONS} | ({"$schema", "environments"} if layer is config else set())
        problems += [f"unknown key {key}" for key in sorted(layer.keys() - known)]
        for section, fields in SECTIONS.items():
            for key, value in layer.get(section, {}).items():
                kind = fields.get(key)
                if kind is None:
                    problems.append(f"unknown key {section}.{key}")
                elif isinstance(kind, frozenset):
                    if value not in kind:
                        problems.append(f"{section}.{key} is {value!r}, not one of {sorted(kind)}")
                elif not isinstance(value, kind) or isinstance(value, bool):
                    problems.append(f"{section}.{key} is {value!r}, not {kind.__name__}")
    return problems


def read_config(project: Path, service: str, variant: Variant) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project / configs(variant)[service]).read_text())
    return config


def read(project: Path, name: str) -> str:
    return (project / name).read_text()


def test_config_check_rejects_what_railway_does_not_document() -> None:
    config = {
        "$schema": SCHEMA_URL,
        "build": {"builder": "NIXPACKS", "dockerFile": "Dockerfile"},
        "deploy": {"drainingSeconds": "30", "restartPolicyType": "ON_FAILURE"},
        "environments": {"production": {"deploy": {"numReplica": 2}}},
        "service": {},
    }
    assert sorted(config_problems(config)) == [
        "build.builder is 'NIXPACKS', not one of ['DOCKERFILE', 'RAILPACK']",
        "deploy.drainingSeconds is '30', not int",
        "unknown key build.dockerFile",
        "unknown key deploy.numReplica",
        "unknown key service",
    ]


@variants
def test_config_files_use_only_documented_fields(render: Render, variant: Variant) -> None:
    project = render(variant)
    for service in services(variant):
        assert config_problems(read_config(project, service, variant)) == [], service


@variants
def test_every_service_builds_the_dockerfile(render: Render, variant: Variant) -> None:
    project = render(variant)
    for service in services(variant):
        build = read_config(project, service, variant)["build"]
        assert build["builder"] == "DOCKERFILE"
        assert (project / build["dockerfilePath"]).is_file()


@variants
def test_api_migrates_before_it_serves_and_is_checked_for_readiness(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    deploy = read_config(project, "api", variant)["deploy"]
    assert deploy["preDeployCommand"] == ["alembic upgrade head"]
    assert deploy["healthcheckPath"] == QUESTIONS["ready_path"]["default"]
    health = (project / "src/my_service/api/health.py").read_text()
    assert f'READY_PATH = "{deploy["healthcheckPath"]}"' in health
    # The image's default command serves the API: the config does not restate it.
    assert "startCommand" not in deploy


def test_worker_runs_the_worker_command_of_the_image(render: Render) -> None:
    project = render(WITH_WORKER)
    deploy = read_config(project, "worker", WITH_WORKER)["deploy"]
    command = re.search(r'^CMD \["([^"]+)", "(\w+)"\]$', read(project, "Dockerfile"), re.M)
    assert command is not None
    program, default = command.groups()
    assert default == "serve"
    assert deploy["startCommand"] == f"{program} worker"
    assert 'add_parser("worker"' in read(project, "src/my_service/__main__.py")
    # One migration per release, and no HTTP endpoint to check.
    assert "preDeployCommand" not in deploy
    assert "healthcheckPath" not in deploy


@variants
def test_draining_outlasts_the_graceful_shutdown(render: Render, variant: Variant) -> None:
    project = render(variant)
    shutdown = re.search(r"^SHUTDOWN_TIMEOUT_SECONDS=(\d+)$", read(project, ".env.example"), re.M)
    assert shutdown is not None
    for service in services(variant):
        deploy = read_config(project, service, variant)["deploy"]
        assert deploy["drainingSeconds"] > int(shutdown.group(1)), service


def test_readme_points_the_worker_at_its_config_file(render: Render) -> None:
    readme = read(render(WITH_WORKER), "README.md")
    # Railway's "Railway Config File" setting takes a path from the repository root.
    assert f"**Railway Config File** to\n   `/{configs(WITH_WORKER)['worker']}`" in readme


@variants
def test_workflows_install_a_pinned_cli_and_pass_the_token(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    for workflow in ("deploy", "rollback"):
        jobs = yaml.safe_load(read(project, f".github/workflows/{workflow}.yml"))["jobs"]
        steps = jobs[workflow]["steps"]
        runs = [step["run"] for step in steps if "run" in step]
        assert any(
            re.fullmatch(r"npm install --global @railway/cli@\d+\.\d+\.\d+", r) for r in runs
        )
        release = next(step for step in steps if "nox -s" in step.get("run", ""))
        assert release["env"]["RAILWAY_TOKEN"] == "${{ secrets.RAILWAY_TOKEN }}"


# ---------------------------------------------------------------------------------------------
# Dry runs


def graphql(plan: str) -> list[dict[str, Any]]:
    """The GraphQL bodies a plan would POST, in order."""
    lines = plan.splitlines()
    bodies = []
    for number, line in enumerate(lines):
        if line.strip().startswith("POST "):
            body = []
            for following in lines[number + 1 :]:
                if not following.startswith(" " * 6):
                    break
                body.append(following)
            bodies.append(json.loads("\n".join(body)))
    return bodies


def operation(body: dict[str, Any]) -> str:
    """The operation name of a GraphQL body: `query name(...) {` gives name."""
    match = re.match(r"(?:query|mutation) (\w+)", body["query"])
    assert match is not None, body["query"]
    return match.group(1)


@pytest.mark.parametrize("variant", [WITH_WORKER, WITHOUT_WORKER], ids=lambda v: v.id)
@environments
def test_deploy_plan_checks_the_token_then_releases_each_service(
    render: Render, variant: Variant, environment: str
) -> None:
    plan = dry_run(render(variant), "deploy", environment, "--version", "v1.2.3")
    assert commands(plan) == [
        f"railway up --ci --service {service} --environment {environment} --message v1.2.3"
        for service in services(variant)
    ]
    calls = graphql(plan)
    assert [operation(call) for call in calls] == ["projectToken"] + ["deployments"] * len(
        services(variant)
    )
    assert plan.index("query projectToken") < plan.index("$ railway up")
    assert set(requests(plan)) == {f"POST {API_URL}"}


@pytest.mark.parametrize("variant", [WITH_WORKER, WITHOUT_WORKER], ids=lambda v: v.id)
@environments
def test_rollback_plan_reads_deployments_then_rolls_each_service_back(
    render: Render, variant: Variant, environment: str
) -> None:
    plan = dry_run(render(variant), "rollback", environment)
    assert commands(plan) == []
    calls = graphql(plan)
    count = len(services(variant))
    assert [operation(call) for call in calls] == (
        ["projectToken"] + ["deployments"] * count + ["deploymentRollback"] * count
    )
    listed = [call["variables"]["input"]["serviceId"] for call in calls[1 : 1 + count]]
    assert listed == [f"<{service} service id>" for service in services(variant)]
    assert "deploymentRollback(id: $id) }" in calls[-1]["query"]  # a Boolean: no selection
    assert re.findall(r"Roll (\w+) back to deployment", plan) == services(variant)


def test_rollback_plan_to_a_deployment_id_rolls_back_only_that(render: Render) -> None:
    plan = dry_run(render(WITH_WORKER), "rollback", "production", "dep-123")
    mutations = [call for call in graphql(plan) if operation(call) == "deploymentRollback"]
    assert [call["variables"] for call in mutations] == [{"id": "dep-123"}]


def test_dry_run_never_prints_the_token(render: Render) -> None:
    project = render(WITH_WORKER)
    for session, posargs in [("deploy", ["staging", "--version", "v1"]), ("rollback", ["staging"])]:
        result = nox(project, session, *posargs, "--dry-run", env={"RAILWAY_TOKEN": TOKEN})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Project-Access-Token: ***" in result.stdout
        assert TOKEN not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Real runs against a fake Railway API on 127.0.0.1


@dataclass
class FakeRailway:
    """Answers the project token's queries and mutations like Railway's GraphQL API does."""

    environment: str = "staging"
    services: dict[str, str] = field(default_factory=lambda: {"api": "svc-api", "worker": "svc-wk"})
    deployments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rollback_status: str = "SUCCESS"
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def answer(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.received.append(body)
        if token != TOKEN:
            return {"errors": [{"message": "Not Authorized"}], "data": None}
        name = operation(body)
        variables = body.get("variables") or {}
        if name == "projectToken":
            edges = [{"node": {"id": i, "name": n}} for n, i in self.services.items()]
            project = {"id": "prj-1", "name": "acme", "services": {"edges": edges}}
            environment = {"id": f"env-{self.environment}", "name": self.environment}
            return {"data": {"projectToken": {"project": project, "environment": environment}}}
        if name == "deployments":
            listed = variables["input"]
            assert listed["projectId"] == "prj-1"
            assert listed["environmentId"] == f"env-{self.environment}"
            nodes = self.deployments[listed["serviceId"]][: variables["first"]]
            return {"data": {"deployments": {"edges": [{"node": node} for node in nodes]}}}
        if name == "deploymentRollback":
            service, old = next(
                (service, node)
                for service, history in self.deployments.items()
                for node in history
                if node["id"] == variables["id"]
            )
            for node in self.deployments[service]:
                if node["status"] == "SUCCESS":
                    node["status"] = "REMOVED"
            # Railway records the rollback as a new deployment of the restored image.
            restored = deployment(
                f"rollback-{old['id']}", self.rollback_status, "2026-10-02T00:00Z"
            )
            self.deployments[service].insert(0, restored)
            return {"data": {"deploymentRollback": True}}
        raise AssertionError(name)

    def mutations(self) -> list[str]:
        """The deployment ids that deploymentRollback was called with, in order."""
        rollbacks = [body for body in self.received if operation(body) == "deploymentRollback"]
        return [body["variables"]["id"] for body in rollbacks]


def deployment(ident: str, status: str, created: str, *, restorable: bool = True) -> dict[str, Any]:
    """A deployment node as Railway's API lists it."""
    return {"id": ident, "status": status, "createdAt": created, "canRollback": restorable}


@pytest.fixture
def railway() -> Iterator[FakeRailway]:
    """A fake Railway API whose services have a history of deployments, newest first."""
    fake = FakeRailway()
    fake.deployments = {
        "svc-api": [
            deployment("api-failed", "FAILED", "2026-10-01T12:00:00Z", restorable=False),
            deployment("api-live", "SUCCESS", "2026-10-01T11:00:00Z"),
            deployment("api-crashed", "CRASHED", "2026-10-01T10:00:00Z"),
            deployment("api-expired", "REMOVED", "2026-10-01T09:00:00Z", restorable=False),
            deployment("api-good", "REMOVED", "2026-10-01T08:00:00Z"),
            deployment("api-older", "REMOVED", "2026-10-01T07:00:00Z"),
        ],
        "svc-wk": [
            deployment("worker-live", "SUCCESS", "2026-10-01T11:01:00Z"),
            deployment("worker-previous", "REMOVED", "2026-10-01T08:01:00Z"),
        ],
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps(fake.answer(self.headers.get("Project-Access-Token"), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/graphql/v2"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def against(fake: FakeRailway, **extra: str) -> dict[str, str]:
    return {"RAILWAY_TOKEN": TOKEN, "RAILWAY_API_URL": fake.url, **extra}


def failure(output: str, session: str) -> str:
    """The one sentence a failed session ends with (nox relays its stderr on stdout)."""
    return next(line for line in output.splitlines() if line.startswith(f"{session} failed:"))


def test_rollback_restores_the_newest_deployment_that_served_before_the_live_one(
    render: Render, railway: FakeRailway
) -> None:
    result = nox(render(WITH_WORKER), "rollback", "staging", env=against(railway))
    assert result.returncode == 0, result.stdout + result.stderr
    assert railway.mutations() == ["api-good", "worker-previous"]
    assert result.stdout.rstrip().endswith("rollback of staging done.")


def test_rollback_of_a_single_service_project(render: Render, railway: FakeRailway) -> None:
    del railway.services["worker"]
    result = nox(render(WITHOUT_WORKER), "rollback", "staging", env=against(railway))
    assert result.returncode == 0, result.stdout + result.stderr
    assert railway.mutations() == ["api-good"]


def test_rollback_to_a_deployment_id_restores_only_its_service(
    render: Render, railway: FakeRailway
) -> None:
    result = nox(render(WITH_WORKER), "rollback", "staging", "api-older", env=against(railway))
    assert result.returncode == 0, result.stdout + result.stderr
    assert railway.mutations() == ["api-older"]


@pytest.mark.parametrize(
    ("version", "reason"),
    [("api-failed", "cannot be restored"), ("api-live", "runs now"), ("nope", "is not among")],
)
def test_rollback_refuses_a_deployment_it_cannot_restore(
    render: Render, railway: FakeRailway, version: str, reason: str
) -> None:
    result = nox(render(WITH_WORKER), "rollback", "staging", version, env=against(railway))
    assert result.returncode != 0
    assert reason in failure(result.stdout, "rollback")
    assert railway.mutations() == []


def test_rollback_stops_on_a_token_of_another_environment(
    render: Render, railway: FakeRailway
) -> None:
    railway.environment = "production"
    result = nox(render(WITH_WORKER), "rollback", "staging", env=against(railway))
    assert result.returncode != 0
    assert '"production" environment' in failure(result.stdout, "rollback")
    assert [operation(body) for body in railway.received] == ["projectToken"]


def test_rollback_fails_when_the_restored_deployment_crashes(
    render: Render, railway: FakeRailway
) -> None:
    railway.rollback_status = "CRASHED"
    result = nox(render(WITH_WORKER), "rollback", "staging", env=against(railway))
    assert result.returncode != 0
    assert "ended rollback-api-good (CRASHED" in failure(result.stdout, "rollback")
    assert railway.mutations() == ["api-good"]  # the worker is left alone


def test_rollback_reports_a_refused_token(render: Render, railway: FakeRailway) -> None:
    env = {**against(railway), "RAILWAY_TOKEN": "wrong-token-0123"}
    result = nox(render(WITH_WORKER), "rollback", "staging", env=env)
    assert result.returncode != 0
    assert "Not Authorized" in failure(result.stdout, "rollback")
    assert "wrong-token-0123" not in result.stdout + result.stderr


@pytest.fixture
def fake_cli(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `railway` on PATH that records its arguments, one call per line."""
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "railway"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{calls}'\n")
    script.chmod(0o755)
    return {"PATH": f"{script.parent}:{BARE_ENV['PATH']}"}, calls


def test_deploy_releases_api_then_worker_and_reports_them(
    render: Render, railway: FakeRailway, fake_cli: tuple[dict[str, str], Path]
) -> None:
    path, calls = fake_cli
    project = render(WITH_WORKER)
    result = nox(project, "deploy", "staging", "--version", "v9", env=against(railway, **path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls.read_text().splitlines() == [
        f"up --ci --service {service} --environment staging --message v9"
        for service in ["api", "worker"]
    ]
    assert "api: api-live (SUCCESS" in result.stdout
    assert "worker: worker-live (SUCCESS" in result.stdout


def test_deploy_stops_before_uploading_with_a_token_of_another_environment(
    render: Render, railway: FakeRailway, fake_cli: tuple[dict[str, str], Path]
) -> None:
    path, calls = fake_cli
    railway.environment = "production"
    result = nox(
        render(WITH_WORKER), "deploy", "staging", "--version", "v9", env=against(railway, **path)
    )
    assert result.returncode != 0
    assert 'use a project token of "staging"' in failure(result.stdout, "deploy")
    assert not calls.exists()
