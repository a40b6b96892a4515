"""Slow tier: `copier update` from an older template version keeps every user edit, per target.

Each test builds a private git repository of this template, tags it v1.0.0, renders a project from
it, edits the project as a user would, releases a realistic v2.0.0 of the template, and updates.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

from .matrix import DEPLOY_TARGETS, ROOT, WITH_SERVICES, Variant, full_variant
from .repos import commit_all, edit, git
from .test_project import nox
from .test_render import expected_files

pytestmark = pytest.mark.update

TEMPLATE_PARTS = ["copier.yml", "template", "includes", "tasks"]
PACKAGE = "my_service"
THIRD_SERVICE = "agent"  # added to a project that has two


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A git repository of this template at v1.0.0."""
    repo = tmp_path / "slipway"
    repo.mkdir()
    for part in TEMPLATE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / part)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "Slipway 1.0.0", tag="v1.0.0")
    return repo


def release_v2(template: Path) -> None:
    """A realistic next release: a changed shared line, a new file, a changed workflow, a new
    question with a default."""
    edit(template / "template/Dockerfile.jinja", "--interval=10s", "--interval=15s")
    (template / "template/SECURITY.md").write_text(
        "# Security\n\nReport vulnerabilities privately to the maintainers.\n"
    )
    edit(
        template / "template/.github/workflows/ci.yml.jinja",
        "  lint:\n    runs-on: ubuntu-24.04\n",
        "  lint:\n    runs-on: ubuntu-24.04\n    timeout-minutes: 15\n",
    )
    edit(
        template / "copier.yml",
        "# Derived facts",
        "log_level:\n  type: str\n  help: Log level of the service\n"
        "  choices: [DEBUG, INFO, WARNING, ERROR]\n  default: INFO\n\n# Derived facts",
    )
    edit(template / "template/.env.example.jinja", "LOG_LEVEL=INFO", "LOG_LEVEL={{ log_level }}")
    commit_all(template, "Slipway 2.0.0", tag="v2.0.0")


def render(template: Path, destination: Path, variant: Variant, ref: str = "v1.0.0") -> Path:
    """Render `variant` from the private template and commit it, as a user would."""
    copier.run_copy(
        str(template),
        str(destination),
        data=variant.answers,
        defaults=True,
        unsafe=True,
        vcs_ref=ref,
        quiet=True,
    )
    git(destination, "init", "-q", "-b", "main")
    commit_all(destination, "Start from Slipway")
    return destination


def update(project: Path, ref: str, **options: Any) -> None:
    """`copier update` as `nox -s template-update -- --defaults` runs it."""
    copier.run_update(
        str(project),
        vcs_ref=ref,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        skip_answered=True,
        **options,
    )


def user_edits(project: Path) -> None:
    """What a team does in its first weeks: a route and its test, a setting, a dependency, the
    README, and a file it does not want."""
    api = project / "src" / PACKAGE / "api"
    (api / "ping.py").write_text(
        '"""Ping: the team\'s own endpoint."""\n\nfrom fastapi import APIRouter\n\n'
        'router = APIRouter(tags=["ping"])\n\n\n@router.get("/ping")\n'
        'async def ping() -> dict[str, str]:\n    """Answer pong."""\n    return {"ping": "pong"}\n'
    )
    edit(
        api / "__init__.py",
        "router.include_router(documents.router)\n",
        "router.include_router(documents.router)\nrouter.include_router(ping.router)\n",
    )
    routers = api / "__init__.py"
    imports = next(
        line for line in routers.read_text().splitlines() if line.startswith("from . import")
    )
    names = sorted([*imports.removeprefix("from . import ").split(", "), "ping"])
    edit(routers, imports, f"from . import {', '.join(names)}")
    (project / "tests/test_ping.py").write_text(
        '"""The team\'s endpoint."""\n\nfrom httpx import AsyncClient\n\n\n'
        "async def test_ping(client: AsyncClient) -> None:\n"
        '    assert (await client.get("/ping")).json() == {"ping": "pong"}\n'
    )
    edit(
        project / "src" / PACKAGE / "config.py",
        'database_pooler: Literal["auto", "none", "session", "transaction"] = "auto"',
        'database_pooler: Literal["auto", "none", "session", "transaction"] = "session"',
    )
    edit(
        project / "pyproject.toml",
        '    "alembic>=1.16",\n',
        '    "alembic>=1.16",\n    "tenacity>=9",\n',
    )
    subprocess.run(["uv", "lock", "--quiet"], cwd=project, check=True)
    edit(
        project / "README.md",
        "## Configuration\n",
        "## Configuration\n\nOur team keeps secrets in the vault.\n",
    )
    (project / ".github/dependabot.yml").unlink()
    commit_all(project, "Our changes")


def project_files(project: Path) -> set[str]:
    """The project's files, as paths relative to it: what git tracks or would (.gitignore'd
    environments and caches left out)."""
    listed = git(project, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return {name for name in listed.split("\0") if name and (project / name).is_file()}


def conflict_markers(project: Path) -> dict[str, int]:
    """Files with inline conflict markers, and how many."""
    found = {}
    for name in project_files(project):
        count = (project / name).read_text(errors="replace").count("<<<<<<<")
        if count:
            found[name] = count
    return found


def nox_lint_and_tests(project: Path) -> None:
    result = nox(project, "-s", "lint", "tests")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]


@pytest.mark.parametrize("deploy_target", DEPLOY_TARGETS)
def test_update_keeps_user_edits(template: Path, tmp_path: Path, deploy_target: str) -> None:
    project = render(template, tmp_path / "project", full_variant(deploy_target))
    user_edits(project)
    release_v2(template)

    update(project, "v2.0.0")

    # Every user edit survived.
    assert (project / "src" / PACKAGE / "api/ping.py").is_file()
    assert (
        "router.include_router(ping.router)"
        in (project / "src" / PACKAGE / "api/__init__.py").read_text()
    )
    assert (project / "tests/test_ping.py").is_file()
    assert '= "session"' in (project / "src" / PACKAGE / "config.py").read_text()
    assert '"tenacity>=9"' in (project / "pyproject.toml").read_text()
    assert "Our team keeps secrets in the vault." in (project / "README.md").read_text()
    assert not (project / ".github/dependabot.yml").exists()
    # Every template change landed.
    assert "--interval=15s" in (project / "Dockerfile").read_text()
    assert (project / "SECURITY.md").is_file()
    assert "timeout-minutes: 15" in (project / ".github/workflows/ci.yml").read_text()
    assert "LOG_LEVEL=INFO" in (project / ".env.example").read_text()
    # Nothing conflicted, and the answers file records the new version and the new answer.
    assert conflict_markers(project) == {}
    assert list(project.rglob("*.rej")) == []
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_commit"], answers["log_level"]) == ("v2.0.0", "INFO")
    nox_lint_and_tests(project)


@pytest.mark.parametrize("conflict", ["inline", "rej"])
def test_conflicts_only_where_both_changed(template: Path, tmp_path: Path, conflict: str) -> None:
    project = render(template, tmp_path / "project", full_variant("vm"))
    edit(project / "Dockerfile", "--interval=10s", "--interval=30s")
    commit_all(project, "Check health less often")
    release_v2(template)

    update(project, "v2.0.0", conflict=conflict)

    dockerfile = (project / "Dockerfile").read_text()
    rejects = sorted(p.relative_to(project).as_posix() for p in project.rglob("*.rej"))
    if conflict == "inline":
        assert conflict_markers(project) == {"Dockerfile": 1}
        assert "--interval=30s" in dockerfile
        assert "--interval=15s" in dockerfile
        assert rejects == []
    else:
        # The file takes the template's line; the user's rejected hunk waits in Dockerfile.rej.
        assert conflict_markers(project) == {}
        assert rejects == ["Dockerfile.rej"]
        assert "--interval=15s" in dockerfile
        assert "+HEALTHCHECK --interval=30s" in (project / "Dockerfile.rej").read_text()
    assert (project / "SECURITY.md").is_file()
    assert "timeout-minutes: 15" in (project / ".github/workflows/ci.yml").read_text()


@pytest.mark.parametrize("deploy_target", DEPLOY_TARGETS)
def test_enabling_the_worker_on_update_adds_its_files(
    template: Path, tmp_path: Path, deploy_target: str
) -> None:
    with_worker = full_variant(deploy_target)
    without = Variant(
        with_worker.topology,
        with_worker.serverless_platform,
        type(with_worker.features)(pgvector=True, redis=True, worker=False),
    )
    project = render(template, tmp_path / "project", without)
    update(project, "v1.0.0", data={"worker": True})
    files = {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }
    assert files == expected_files(with_worker, PACKAGE)
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["worker"] is True
    if deploy_target == "vm":
        nox_lint_and_tests(project)


@pytest.mark.parametrize("with_services", WITH_SERVICES, ids=lambda variant: variant.id)
def test_adding_and_removing_a_service_on_update(
    template: Path, tmp_path: Path, with_services: Variant
) -> None:
    # The third service owns tables, as one of the first two does: its models, history and
    # database settings arrive with it.
    two, owners = list(with_services.services), list(with_services.service_tables)
    assert owners
    three = replace(
        with_services,
        services=(*two, THIRD_SERVICE),
        service_tables=(*owners, THIRD_SERVICE),
    )
    project = render(template, tmp_path / "project", with_services)
    user_edits(project)
    # The team's own change to the first service's example route.
    routes = project / "src" / PACKAGE / "services" / two[0].replace("-", "_") / "routes.py"
    routes.write_text(routes.read_text() + "\n\n# Our note about this service.\n")
    commit_all(project, "Our note")

    before = project_files(project)

    update(
        project,
        "v1.0.0",
        data={"services": [*two, THIRD_SERVICE], "service_tables": [*owners, THIRD_SERVICE]},
    )

    # Exactly the third service's files and wiring arrive; every edit stays.
    added = expected_files(three, PACKAGE) - expected_files(with_services, PACKAGE)
    assert added
    assert project_files(project) == before | added
    assert "# Our note about this service." in routes.read_text()
    assert '= "session"' in (project / "src" / PACKAGE / "config.py").read_text()
    assert "Our team keeps secrets in the vault." in (project / "README.md").read_text()
    assert conflict_markers(project) == {}
    assert list(project.rglob("*.rej")) == []
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["services"] == [*two, THIRD_SERVICE]
    assert answers["service_tables"] == [*owners, THIRD_SERVICE]
    environment = project / "src" / PACKAGE / "services" / THIRD_SERVICE / "migrations/env.py"
    assert f"{PACKAGE}.services.{THIRD_SERVICE}.models" in environment.read_text()
    # Lint and tests once: the services' code is the same on every target.
    if with_services == WITH_SERVICES[-1]:
        nox_lint_and_tests(project)
    commit_all(project, "Add a third service")

    # Removing it (docs/updating.md) takes its files away again, and only those.
    update(project, "v1.0.0", data={"services": two, "service_tables": owners})
    assert project_files(project) == before
    assert "# Our note about this service." in routes.read_text()
    assert conflict_markers(project) == {}


def test_user_owned_migrations_are_never_rewritten(template: Path, tmp_path: Path) -> None:
    project = render(template, tmp_path / "project", full_variant("vm"))
    migration = project / "src" / PACKAGE / "migrations/versions/0001_documents.py"
    shipped = migration.read_text()
    edit(
        template
        / "template/src/{{package_name}}/migrations/versions"
        / "{% if pgvector %}0001_documents.py{% endif %}.jinja",
        'sa.Column("title", sa.String(length=200), nullable=False),',
        'sa.Column("title", sa.String(length=300), nullable=False),',
    )
    commit_all(template, "Slipway 2.0.0", tag="v2.0.0")
    update(project, "v2.0.0")
    assert migration.read_text() == shipped


K8S_COMPONENTS = "template/{% if deploy_target in ['vm', 'k8s'] %}deploy{% endif %}/" + (
    "{% if deploy_target == 'k8s' %}k8s{% endif %}/components"
)


def test_the_apis_autoscaler_and_budget_keep_edits_under_their_new_names(tmp_path: Path) -> None:
    # Slipway 0.1 named the api's autoscaler hpa.yaml and its budget pdb.yaml; 0.2 has a file per
    # component (api-hpa.yaml, ...), and copier.yml's migration moves the two before merging.
    template = tmp_path / "slipway"
    template.mkdir()
    for part in TEMPLATE_PARTS:
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy2
        copy(ROOT / part, template / part)
    git(template, "init", "-q", "-b", "main")
    components = template / K8S_COMPONENTS
    for directory, kind in (("autoscaling", "hpa"), ("disruption-budget", "pdb")):
        (components / directory / f"api-{kind}.yaml.jinja").rename(
            components / directory / f"{kind}.yaml.jinja"
        )
        edit(
            components / directory / "kustomization.yaml.jinja",
            f"  - {{{{ component }}}}-{kind}.yaml",
            f"  - {{{{ '{kind}.yaml' if component == 'api' else component ~ '-{kind}.yaml' }}}}",
        )
    commit_all(template, "Slipway 0.1.0", tag="v0.1.0")
    project = render(template, tmp_path / "project", full_variant("k8s"), ref="v0.1.0")
    autoscaling = project / "deploy/k8s/components/autoscaling"
    edit(autoscaling / "hpa.yaml", "maxReplicas: 10", "maxReplicas: 30")
    commit_all(project, "Scale further")
    shutil.rmtree(template / "template")
    shutil.copytree(ROOT / "template", template / "template")
    commit_all(template, "Slipway 0.2.0", tag="v0.2.0")

    update(project, "v0.2.0")

    assert not (autoscaling / "hpa.yaml").exists()
    assert not (project / "deploy/k8s/components/disruption-budget/pdb.yaml").exists()
    assert (project / "deploy/k8s/components/disruption-budget/api-pdb.yaml").is_file()
    # As for any moved file (see the next test), copier compares the versions whole: the user's
    # line is marked for review against the template's, and the template's new lines merge.
    moved = (autoscaling / "api-hpa.yaml").read_text()
    assert "<<<<<<< before updating\n  maxReplicas: 30\n=======\n  maxReplicas: 10\n" in moved
    assert "name: memory" in moved
    assert conflict_markers(project) == {"deploy/k8s/components/autoscaling/api-hpa.yaml": 1}


def test_a_moved_file_keeps_user_edits_through_a_migration(template: Path, tmp_path: Path) -> None:
    project = render(template, tmp_path / "project", full_variant("vm"))
    edit(
        project / "scripts/backup.py",
        "LOCAL_HOSTS = {",
        "# Our staging host is local too.\nLOCAL_HOSTS = {",
    )
    commit_all(project, "Note about hosts")
    # v2.0.0 moves scripts/backup.py to scripts/db_backup.py (and changes it), with the
    # `_migrations` entry a release that moves a file must carry (docs/releasing.md).
    scripts = template / "template/scripts"
    (scripts / "backup.py.jinja").rename(scripts / "db_backup.py.jinja")
    edit(scripts / "db_backup.py.jinja", '"""Before a migration:', '"""Before every migration:')
    migrate = template / "template/scripts/migrate.py.jinja"
    edit(migrate, "from . import backup, services", "from . import db_backup, services")
    edit(migrate, "(status := backup.main())", "(status := db_backup.main())")
    edit(
        template / "copier.yml",
        "_migrations:\n",
        "_migrations:\n  - version: v2.0.0\n    when: \"{{ _stage == 'before' }}\"\n"
        "    command: [git, mv, scripts/backup.py, scripts/db_backup.py]\n",
    )
    commit_all(template, "Slipway 2.0.0", tag="v2.0.0")

    update(project, "v2.0.0")

    # The user's copy moved, so their edit survives under the new name. The old version has no
    # file at the new path, so copier compares the two versions whole: each difference, the user's
    # and the template's, is marked once for review (docs/updating.md).
    moved = (project / "scripts/db_backup.py").read_text()
    assert not (project / "scripts/backup.py").exists()
    assert "# Our staging host is local too." in moved
    assert '"""Before every migration:' in moved
    assert conflict_markers(project) == {"scripts/db_backup.py": 2}
    assert "from . import db_backup, services" in (project / "scripts/migrate.py").read_text()
