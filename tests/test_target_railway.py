"""The railway target: config as code per service, and releases to a fake Railway.

Dry runs show the plan. Real runs go to tests/fakes/railway.py: a stateful Railway whose
`railway up` builds what it is given and whose GraphQL API serves from this process.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Render
from .deploy import dry_run, nox
from .fakes import Fakes, State
from .fakes import railway as fake
from .matrix import QUESTIONS, WITH_SERVICES, Variant, variants_of
from .test_release_scenarios import ENVIRONMENT, Repository, git, make_repository

VARIANTS = variants_of("railway")
WITH_WORKER = next(v for v in VARIANTS if v.features.worker)
WITHOUT_WORKER = next(v for v in VARIANTS if not v.features.worker)
[WITH_EXTRA] = [variant for variant in WITH_SERVICES if variant.deploy_target == "railway"]
ENVIRONMENTS = ["staging", "production"]
API_URL = "https://backboard.railway.com/graphql/v2"
EXPORT = "'<temporary directory>/source'"  # where a dry run exports the commit to

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
both = pytest.mark.parametrize("variant", [WITH_WORKER, WITHOUT_WORKER], ids=lambda v: v.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


def services(variant: Variant) -> list[str]:
    """The Railway services a project of `variant` runs, in release order: the worker, the
    extra services by name, the API."""
    worker = ["worker"] if variant.features.worker else []
    return [*worker, *sorted(variant.services), "api"]


def configs(variant: Variant) -> dict[str, str]:
    """Each Railway service and its config-as-code file."""
    return {service: fake.config_path(service) for service in services(variant)}


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
def test_every_service_migrates_before_its_new_code_starts(
    render: Render, variant: Variant
) -> None:
    project = render(variant)
    # The first service a release switches migrates; the others find the schema current, and
    # an older release's migrate (a rollback) keeps a newer schema. An extra service that uses
    # no database has no DATABASE_URL to migrate with, and nothing to migrate.
    for service in services(variant):
        deploy = read_config(project, service, variant)["deploy"]
        uses_database = service in {"api", "worker", *variant.service_tables}
        migrates = ["my-service migrate"] if uses_database else None
        assert deploy.get("preDeployCommand") == migrates, service
    assert 'add_parser("migrate"' in read(project, "src/my_service/__main__.py")


def test_each_extra_service_serves_its_app_and_is_checked_for_readiness(render: Render) -> None:
    project = render(WITH_EXTRA)
    api = read_config(project, "api", WITH_EXTRA)["deploy"]
    readme = read(project, "README.md")
    for service in WITH_EXTRA.services:
        deploy = read_config(project, service, WITH_EXTRA)["deploy"]
        assert deploy["startCommand"] == f"my-service serve {service}"
        # Everything else as the API's: the same image, readiness and handover, and migration
        # if it owns tables.
        owns_tables = service in WITH_EXTRA.service_tables
        differs = {"startCommand"} | (set() if owns_tables else {"preDeployCommand"})
        assert {k: v for k, v in deploy.items() if k not in differs} == {
            k: v for k, v in api.items() if k not in differs
        }
        assert f"**Railway Config File** to `/railway.{service}.json`" in readme
        assert f"`{service.upper()}_URL`" in readme  # where the API calls it
    # The database's private URL, for each service that owns tables only.
    database = "| | `DATABASE_URL` | `${{Postgres.DATABASE_URL}}`: its tables are in the API's"
    assert readme.count(database) == len(WITH_EXTRA.service_tables) > 0


@variants
def test_api_is_checked_for_readiness(render: Render, variant: Variant) -> None:
    project = render(variant)
    deploy = read_config(project, "api", variant)["deploy"]
    assert deploy["healthcheckPath"] == QUESTIONS["ready_path"]["default"]
    # The path is the service's one constant, which the app serves.
    constant = f'READY_PATH = "{deploy["healthcheckPath"]}"'
    sources = (project / "src/my_service").rglob("*.py")
    assert len([source for source in sources if constant in source.read_text()]) == 1
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
    assert "healthcheckPath" not in deploy  # no HTTP endpoint to check


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


def test_image_takes_the_labels_a_release_sets(render: Render) -> None:
    # Railway passes service variables to the build as the Dockerfile's ARGs of the same name.
    dockerfile = read(render(WITH_WORKER), "Dockerfile")
    assert re.search(r"^ARG GIT_SHA=", dockerfile, re.M)
    assert re.search(r"^ARG IMAGE_TAG=", dockerfile, re.M)


@variants
def test_workflows_install_the_cli_and_pass_the_token(render: Render, variant: Variant) -> None:
    project = render(variant)
    for workflow in ("deploy", "rollback"):
        steps = yaml.safe_load(read(project, f".github/workflows/{workflow}.yml"))["jobs"][
            workflow
        ]["steps"]
        release = next(n for n, step in enumerate(steps) if "nox -s" in step.get("run", ""))
        install = next(n for n, step in enumerate(steps) if "Railway CLI" in step.get("name", ""))
        assert install < release
        assert steps[release]["env"]["RAILWAY_TOKEN"] == "${{ secrets.RAILWAY_TOKEN }}"


# ---------------------------------------------------------------------------------------------
# Dry runs


def plan_steps(plan: str) -> list[str]:
    """The commands a plan would run and the GraphQL requests it would send, in order.

    A request reads `graphql OPERATION [SUBJECT]`, as the fake logs it.
    """
    lines = plan.splitlines()
    steps = []
    for number, line in enumerate(lines):
        if line.strip().startswith("$ "):
            steps.append(line.strip())
        elif line.strip() == f"POST {API_URL}":
            steps.append(" ".join(["graphql", *call(graphql_body(lines, number))]))
    return steps


def graphql_body(lines: list[str], number: int) -> dict[str, Any]:
    """The JSON body printed under the request on line `number`."""
    body = []
    for following in lines[number + 1 :]:
        if not following.startswith(" " * 6):
            break
        body.append(following)
    parsed: dict[str, Any] = json.loads("\n".join(body))
    return parsed


def call(body: dict[str, Any]) -> list[str]:
    return [fake.operation(body["query"]), *fake.subject(body)]


def bodies(plan: str, operation: str) -> list[dict[str, Any]]:
    """The bodies of a plan's requests of one GraphQL operation."""
    lines = plan.splitlines()
    found = [
        graphql_body(lines, number)
        for number, line in enumerate(lines)
        if line.strip() == f"POST {API_URL}"
    ]
    return [body for body in found if fake.operation(body["query"]) == operation]


def releases(variant: Variant, environment: str, version: str) -> list[str]:
    """What a plan does to release `version` to each service."""
    return [
        step
        for service in services(variant)
        for step in (
            f"graphql variableCollectionUpsert <{service} service id>",
            f"$ railway up {EXPORT} --path-as-root --service {service} --environment "
            f"{environment} --message {version} --detach --json",
        )
    ]


def locked(plan: list[str]) -> list[str]:
    """A plan, with the requests that take and give back the lock in place."""
    take = [
        "graphql variables shared",
        "graphql variableUpsert RELEASE_LOCK",
        "graphql variables shared",
    ]
    return ["graphql projectToken", *take, *plan, "graphql variableDelete RELEASE_LOCK"]


def export(commit: str) -> list[str]:
    tarball = "'--output=<temporary directory>/commit.tar'"
    return [
        f"$ git cat-file -e {commit}",
        f"$ git archive --prefix=source/ {tarball} {commit}",
        "$ tar --extract '--file=<temporary directory>/commit.tar' "
        "'--directory=<temporary directory>'",
    ]


@pytest.fixture
def repository(render: Render, tmp_path: Path, variant: Variant) -> Repository:
    """The project in a git repository of three releases, v1, v2 (adds a migration) and v3."""
    return make_repository(render(variant), tmp_path)


@both
@environments
def test_deploy_plan_exports_the_commit_and_releases_each_service(
    repository: Repository, variant: Variant, environment: str
) -> None:
    plan = dry_run(repository.checkout("v1"), "deploy", environment, "--version", "v1.2.3")
    commit = git(repository.path, "rev-parse", "v1").strip()
    read_state = [
        "graphql variables shared",
        *(f"graphql deployments <{service} service id>" for service in services(variant)),
    ]
    record = ["graphql variableUpsert RELEASE_HISTORY"]
    assert plan_steps(plan) == locked(
        [*read_state, *export(commit), *releases(variant, environment, "v1.2.3"), *record]
    )
    labels = [
        body["variables"]["input"]["variables"] for body in bodies(plan, "variableCollectionUpsert")
    ]
    assert labels == [{"IMAGE_TAG": "v1.2.3", "GIT_SHA": commit}] * len(services(variant))


@both
def test_every_variable_a_release_writes_leaves_the_services_running(
    repository: Repository, variant: Variant
) -> None:
    plan = dry_run(repository.checkout("v1"), "deploy", "staging", "--version", "v1")
    writes = bodies(plan, "variableUpsert") + bodies(plan, "variableCollectionUpsert")
    assert len(writes) == 2 + len(services(variant))
    assert all(body["variables"]["input"]["skipDeploys"] is True for body in writes)
    # The lock and the history are shared variables: no service references them.
    for body in bodies(plan, "variableUpsert") + bodies(plan, "variableDelete"):
        assert "serviceId" not in body["variables"]["input"]


@both
@environments
def test_rollback_plan_rebuilds_the_previous_release(
    repository: Repository, variant: Variant, environment: str
) -> None:
    plan = dry_run(repository.checkout("v3"), "rollback", environment)
    read_state = [
        "graphql variables shared",
        *(f"graphql deployments <{service} service id>" for service in services(variant)),
    ]
    rebuild = [*export("'<its commit>'"), *releases(variant, environment, "'<previous release>'")]
    record = ["graphql variableUpsert RELEASE_HISTORY"]
    assert plan_steps(plan) == locked([*read_state, *rebuild, *record])
    labels = [
        body["variables"]["input"]["variables"] for body in bodies(plan, "variableCollectionUpsert")
    ]
    assert labels == [{"IMAGE_TAG": "<previous release>", "GIT_SHA": "<its commit>"}] * len(
        services(variant)
    )
    assert "with the variables of today" in plan


@pytest.mark.parametrize("variant", [WITH_WORKER], ids=lambda v: v.id)
def test_rollback_plan_to_a_version_labels_it(repository: Repository) -> None:
    plan = dry_run(repository.checkout("v3"), "rollback", "production", "v1.2.0")
    assert "--message v1.2.0" in plan
    labels = [
        body["variables"]["input"]["variables"] for body in bodies(plan, "variableCollectionUpsert")
    ]
    assert {label["IMAGE_TAG"] for label in labels} == {"v1.2.0"}


def test_dry_run_never_prints_the_token(render: Render) -> None:
    project = render(WITH_WORKER)
    for session, posargs in [("deploy", ["staging", "--version", "v1"]), ("rollback", ["staging"])]:
        result = nox(project, session, *posargs, "--dry-run", env={"RAILWAY_TOKEN": fake.TOKEN})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Project-Access-Token: ***" in result.stdout
        assert fake.TOKEN not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Real runs against the fake Railway


@dataclass
class Railway:
    """A project of three releases and the fake Railway it releases to."""

    fakes: Fakes
    repo: Repository
    env: dict[str, str]
    services: list[str]
    variant: Variant

    def release(
        self, *args: str, checkout: str = "v3", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `nox -s deploy|rollback -- ARGS` from a checkout of a release."""
        project = self.repo.checkout(checkout)
        return self.fakes.release(project, *args, env={**self.env, **(env or {})})

    def deploy(self, *versions: str) -> None:
        for version in versions:
            result = self.release("deploy", ENVIRONMENT, "--version", version, checkout=version)
            assert result.returncode == 0, result.stdout + result.stderr

    def commit(self, version: str) -> str:
        return git(self.repo.path, "rev-parse", version).strip()

    def state(self) -> State:
        return self.fakes.state()

    def live(self) -> dict[str, dict[str, Any]]:
        """The deployment each service serves from."""
        state = self.state()
        found = {service: fake.live(state, service) for service in self.services}
        assert None not in found.values(), found
        return {service: deployment for service, deployment in found.items() if deployment}

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment, oldest first."""
        return sorted(self.state()["railway"]["deployments"], key=lambda d: d["number"])

    def shared(self) -> dict[str, str]:
        variables: dict[str, str] = self.state()["railway"]["variables"]["shared"]
        return variables

    def history(self) -> list[dict[str, Any]]:
        return fake.TARGET.history(self.state())

    def requests(self) -> list[str]:
        """The GraphQL requests made so far, as `OPERATION SUBJECT`."""
        return [" ".join(call) for call in self.fakes.calls("graphql")]

    def change(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the fake Railway (its part of the state)."""
        self.fakes.update(lambda state: change(state["railway"]))


@pytest.fixture
def railway(render: Render, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Railway]:
    """An empty Railway project (of the variant given by indirect parametrization: the worker)."""
    variant: Variant = getattr(request, "param", WITH_WORKER)
    repo = make_repository(render(variant), tmp_path)
    fakes = Fakes(tmp_path / "platform", "railway", ("railway",))
    fake.setup(fakes, services=tuple(services(variant)), variables={"API_KEY": "key-1"})
    env = {"RAILWAY_TOKEN": fake.TOKEN, "RAILWAY_API_URL": fake.serve(fakes)}
    yield Railway(fakes, repo, env, services(variant), variant)
    fake.stop(fakes)


each_variant = pytest.mark.parametrize(
    "railway", [WITH_WORKER, WITHOUT_WORKER, WITH_EXTRA], ids=lambda v: v.id, indirect=True
)


@each_variant
def test_deploy_builds_the_commit_for_each_service_in_order_and_labels_it(
    railway: Railway,
) -> None:
    railway.deploy("v1")
    commit = railway.commit("v1")
    deployments = railway.deployments()
    # One deployment per service, in release order: a label change redeployed nothing.
    assert [d["service"] for d in deployments] == railway.services
    for deployment in deployments:
        assert deployment["status"] == "SUCCESS"
        assert deployment["message"] == "v1"
        assert deployment["artifact"]["version"] == "v1"
        assert deployment["artifact"]["sha"] == commit
        assert deployment["variables"] == {"API_KEY": "key-1", "IMAGE_TAG": "v1", "GIT_SHA": commit}
        # Each service whose code uses the database migrates before it starts.
        uses_database = deployment["service"] in {"api", "worker", *railway.variant.service_tables}
        migrated = [line.split(":")[0] for line in deployment["log"]]
        assert migrated == (["my-service migrate"] if uses_database else [])
    assert railway.state()["database"]["revision"] == "0001"
    [entry] = railway.history()
    assert (entry["action"], entry["version"], entry["commit"]) == ("deploy", "v1", commit)
    assert entry["artifacts"] == {d["service"]: d["id"] for d in deployments}
    assert entry["revision"] == "0001"
    assert "RELEASE_LOCK" not in railway.shared()


def test_deploy_uploads_committed_files_only(railway: Railway) -> None:
    project = railway.repo.checkout("v1")
    (project / ".env").write_text("API_KEY=a-secret-of-my-laptop\n")
    (project / "backups").mkdir()
    (project / "backups/my_service-before-v1.dump").write_text("rows")
    railway.deploy("v1")
    for deployment in railway.deployments():
        assert {"Dockerfile", "railway.json", "uv.lock"} <= set(deployment["files"])
        assert ".env" not in deployment["files"]
        assert not [name for name in deployment["files"] if name.startswith("backups")]


def test_rollback_rebuilds_the_earlier_commit_with_the_variables_of_today(
    railway: Railway,
) -> None:
    railway.deploy("v1")
    # A credential rotated after v1: Railway's own rollback would bring "key-1" back.
    railway.change(lambda r: [r["variables"][s].update(API_KEY="key-2") for s in railway.services])
    railway.deploy("v2")
    result = railway.release("rollback", ENVIRONMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    for deployment in railway.live().values():
        assert deployment["artifact"]["version"] == "v1"
        assert deployment["artifact"]["sha"] == railway.commit("v1")
        assert deployment["variables"]["API_KEY"] == "key-2"
        # v1's migrate found v2's schema and kept it.
        assert deployment["log"] == [
            "my-service migrate: the database is at revision 0002, which a newer release "
            "migrated to"
        ]
    assert railway.state()["database"]["revision"] == "0002"
    assert not [r for r in railway.requests() if r.startswith("deploymentRollback")]
    entries = railway.history()
    assert [(e["action"], e["version"]) for e in entries] == [
        ("deploy", "v1"),
        ("deploy", "v2"),
        ("rollback", "v1"),
    ]
    assert entries[-1]["artifacts"] == {s: d["id"] for s, d in railway.live().items()}


@pytest.mark.parametrize("railway", [WITH_EXTRA], ids=lambda v: v.id, indirect=True)
def test_a_rollback_to_a_release_without_a_service_leaves_the_service_running(
    railway: Railway,
) -> None:
    railway.deploy("v1")
    extra = sorted(WITH_EXTRA.services)

    def added_after_v1(platform: dict[str, Any]) -> None:
        """v1's entry as a release from before the extra services were added records it."""
        shared = platform["variables"]["shared"]
        [entry] = [json.loads(line) for line in shared["RELEASE_HISTORY"].splitlines()]
        entry["artifacts"] = {k: v for k, v in entry["artifacts"].items() if k not in extra}
        shared["RELEASE_HISTORY"] = json.dumps(entry) + "\n"

    railway.change(added_after_v1)
    railway.deploy("v2")
    v2 = railway.live()
    uploads = len(railway.deployments())
    result = railway.release("rollback", ENVIRONMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{', '.join(extra)}: not in v1, so left as they run" in result.stdout

    live = railway.live()
    for service in railway.services:
        expected = "v2" if service in extra else "v1"
        assert live[service]["artifact"]["version"] == expected, service
    assert [d["service"] for d in railway.deployments()[uploads:]] == ["worker", "api"]
    rollback = railway.history()[-1]
    assert rollback["action"] == "rollback"
    assert rollback["artifacts"] == {service: live[service]["id"] for service in railway.services}
    assert {service: live[service]["id"] for service in extra} == {
        service: v2[service]["id"] for service in extra
    }


def test_rollback_needs_the_commit_of_the_release(railway: Railway) -> None:
    railway.deploy("v1", "v2")
    missing = "0" * 40  # as in a shallow clone, which lacks v1's commit

    def lose_commit(platform: dict[str, Any]) -> None:
        shared = platform["variables"]["shared"]
        shared["RELEASE_HISTORY"] = shared["RELEASE_HISTORY"].replace(railway.commit("v1"), missing)

    railway.change(lose_commit)
    before = railway.deployments()
    result = railway.release("rollback", ENVIRONMENT)
    assert result.returncode == 1
    assert f"commit {missing} of v1 is not in this checkout: fetch the whole" in result.stderr
    assert railway.deployments() == before
    assert "RELEASE_LOCK" not in railway.shared()


def test_an_api_that_fails_after_the_worker_went_live_puts_the_worker_back(
    railway: Railway,
) -> None:
    railway.deploy("v1")
    worker = railway.live()["worker"]["id"]
    railway.fakes.inject("fail", match="railway up", nth=2)  # the api's upload
    result = railway.release("deploy", ENVIRONMENT, "--version", "v2", checkout="v2")
    assert result.returncode == 1
    assert "`railway up` failed with exit code 1; v1 serves as before" in result.stderr
    # The deployment the worker ran minutes ago, through Railway's rollback.
    assert f"deploymentRollback {worker}" in railway.requests()
    labels = {"IMAGE_TAG": "v1", "GIT_SHA": railway.commit("v1")}
    for service, deployment in railway.live().items():
        assert deployment["artifact"]["version"] == "v1", service
        variables = railway.state()["railway"]["variables"][service]
        assert {name: variables[name] for name in labels} == labels, service
    assert [e["version"] for e in railway.history()] == ["v1"]
    assert "RELEASE_LOCK" not in railway.shared()


def test_a_first_release_that_fails_says_so(railway: Railway) -> None:
    fake.TARGET.break_component(railway.fakes, "api")
    result = railway.release("deploy", ENVIRONMENT, "--version", "v1", checkout="v1")
    assert result.returncode == 1
    assert "ended FAILED; worker ran nothing before and now runs v1: fix the" in result.stderr
    assert railway.history() == []
    assert "RELEASE_LOCK" not in railway.shared()


def test_a_first_release_puts_back_what_ran_before_it(railway: Railway) -> None:
    # Services deployed before releases kept a history (by Slipway 0.1, or by hand).
    railway.deploy("v1")
    railway.change(lambda r: r["variables"]["shared"].pop("RELEASE_HISTORY"))
    fake.TARGET.break_component(railway.fakes, "api")
    result = railway.release("deploy", ENVIRONMENT, "--version", "v2", checkout="v2")
    assert result.returncode == 1
    assert "ended FAILED; what ran before serves as before" in result.stderr
    assert {s: d["artifact"]["version"] for s, d in railway.live().items()} == {
        "worker": "v1",
        "api": "v1",
    }


@pytest.mark.parametrize("action", ["deploy", "rollback"])
def test_a_token_of_another_environment_changes_nothing(railway: Railway, action: str) -> None:
    railway.change(lambda r: r["environment"].update(id="env-production", name="production"))
    result = railway.release(action, ENVIRONMENT)
    assert result.returncode == 1
    assert 'belongs to the "production" environment of project "acme"' in result.stderr
    assert railway.fakes.calls() == [["graphql", "projectToken"]]


def test_a_refused_token_is_reported_and_never_printed(railway: Railway) -> None:
    result = railway.release("deploy", ENVIRONMENT, env={"RAILWAY_TOKEN": "wrong-token-0123"})
    assert result.returncode == 1
    assert "Railway's API answered: Not Authorized" in result.stderr
    assert "wrong-token-0123" not in result.stdout + result.stderr


def lease(holder: str, *, host: str, expires_in: int) -> str:
    """A lease as a release on another machine wrote it."""
    now = datetime.now(UTC)
    return json.dumps(
        {
            "holder": holder,
            "host": host,
            "pid": 1,
            "action": "deploy",
            "version": "v9",
            "since": now.isoformat(timespec="seconds"),
            "expires": (now + timedelta(seconds=expires_in)).isoformat(timespec="seconds"),
        }
    )


def test_a_lease_held_elsewhere_refuses_and_an_expired_one_is_taken_over(
    railway: Railway,
) -> None:
    holder = "ci in https://github.com/acme/svc/actions/runs/42"
    held = lease(holder, host="runner-1", expires_in=90)
    railway.change(lambda r: r["variables"]["shared"].update(RELEASE_LOCK=held))
    refused = railway.release("deploy", ENVIRONMENT, "--version", "v1", checkout="v1")
    assert refused.returncode == 1
    assert f"staging is being released by {holder}, deploy of v9 since" in refused.stderr
    assert railway.deployments() == []
    assert railway.shared()["RELEASE_LOCK"] == held

    expired = lease(holder, host="runner-1", expires_in=-1)
    railway.change(lambda r: r["variables"]["shared"].update(RELEASE_LOCK=expired))
    railway.deploy("v1")
    assert [e["version"] for e in railway.history()] == ["v1"]
    assert "RELEASE_LOCK" not in railway.shared()
