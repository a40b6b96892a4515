"""Fast tier: every variant renders into a complete, clean project."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from ruff.__main__ import find_ruff_bin

from . import targets
from .conftest import Render
from .matrix import NAMED, VARIANTS, Variant

PACKAGE = "src/{package}"  # the package directory, named by the project's answers
COMMON = {
    ".copier-answers.yml",
    ".dockerignore",
    ".env.example",
    ".github/dependabot.yml",
    ".github/workflows/ci.yml",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "compose.yaml",
    "noxfile.py",
    "pyproject.toml",
    "uv.lock",
    "scripts/__init__.py",
    "scripts/backup.py",
    "scripts/dev.py",
    "scripts/migrate.py",
    "scripts/services.py",
    "scripts/deploy/__init__.py",
    "scripts/deploy/__main__.py",
    "scripts/deploy/history.py",
    "scripts/deploy/locks.py",
    ".github/workflows/deploy.yml",
    ".github/workflows/rollback.yml",
    ".github/workflows/template-update.yml",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/__main__.py",
    f"{PACKAGE}/api/__init__.py",
    f"{PACKAGE}/api/documents.py",
    f"{PACKAGE}/api/events.py",
    f"{PACKAGE}/api/health.py",
    f"{PACKAGE}/api/routing.py",
    f"{PACKAGE}/app.py",
    f"{PACKAGE}/config.py",
    f"{PACKAGE}/db.py",
    f"{PACKAGE}/dependencies.py",
    f"{PACKAGE}/errors.py",
    f"{PACKAGE}/logs.py",
    f"{PACKAGE}/metrics.py",
    f"{PACKAGE}/middleware.py",
    f"{PACKAGE}/migrations/__init__.py",
    f"{PACKAGE}/migrate.py",
    f"{PACKAGE}/migrations/env.py",
    f"{PACKAGE}/migrations/script.py.mako",
    f"{PACKAGE}/migrations/versions/0001_documents.py",
    f"{PACKAGE}/models.py",
    f"{PACKAGE}/pool.py",
    f"{PACKAGE}/probes.py",
    f"{PACKAGE}/readers.py",
    f"{PACKAGE}/resources.py",
    f"{PACKAGE}/schemas.py",
    f"{PACKAGE}/services/__init__.py",
    f"{PACKAGE}/telemetry.py",
    f"{PACKAGE}/web.py",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_config.py",
    "tests/test_documents.py",
    "tests/test_errors.py",
    "tests/test_events.py",
    "tests/test_faults.py",
    "tests/test_fuzz.py",
    "tests/test_health.py",
    "tests/test_pool.py",
    "tests/test_telemetry.py",
    "tests/test_migrations.py",
}
PGVECTOR = {f"{PACKAGE}/embeddings.py", f"{PACKAGE}/api/search.py", "tests/test_search.py"}
REDIS = {f"{PACKAGE}/cache.py", "tests/test_cache.py"}
WORKER = {
    f"{PACKAGE}/worker.py",
    f"{PACKAGE}/queue.py",
    f"{PACKAGE}/api/jobs.py",
    "tests/test_worker.py",
}
# Each extra service: a package of its own; their tests are one file.
SERVICE = {
    f"{PACKAGE}/services/{{module}}/{name}"
    for name in ("__init__.py", "app.py", "config.py", "routes.py")
}
# A service that owns tables: its models and its own Alembic history.
TABLES = {
    f"{PACKAGE}/services/{{module}}/{name}"
    for name in (
        "models.py",
        "database.py",
        "items.py",
        "migrations/__init__.py",
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions/0001_{module}_items.py",
    )
}
SERVICES = {"tests/test_services.py"}
# Where Prometheus can scrape the service: alert rules, their tests, the runbook, a dashboard.
MONITORING = {
    "monitoring/alerts.yml",
    "monitoring/alerts.test.yml",
    "monitoring/RUNBOOK.md",
    "monitoring/dashboard.json",
    "tests/test_monitoring.py",
}

# Jinja left in the output. Not Jinja: GitHub expressions (`${{ }}`), docker/metadata-action's
# tag patterns (`{{version}}`), and Go templates (`{{ $value }}` in alert rules, `{{.State}}`).
UNRENDERED = re.compile(r"(?<!\$)\{\{(?!(version|major|minor|patch)\}\}| \$|\.)|\{%|\{#|\.jinja\b")
PARSERS = {
    ".yml": yaml.safe_load,
    ".yaml": yaml.safe_load,
    ".json": json.loads,
    ".toml": tomllib.loads,
    ".lock": tomllib.loads,
}

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
# Every variant, and the default one under project names that sort around `scripts`.
named_too = pytest.mark.parametrize("variant", VARIANTS + NAMED, ids=lambda variant: variant.id)


def answers_of(project: Path) -> dict[str, object]:
    """The answers a rendered project records (with the derived package name)."""
    return dict(yaml.safe_load((project / ".copier-answers.yml").read_text()))


def expected_files(variant: Variant, package: str) -> set[str]:
    """Every file a project of this variant has, and no other."""
    files = set(COMMON)
    if variant.features.pgvector:
        files |= PGVECTOR
    if variant.features.redis:
        files |= REDIS
    if variant.features.worker:
        files |= WORKER
    if variant.services:
        files |= SERVICES
    if variant.topology != "serverless":
        files |= MONITORING
    if variant.topology in {"serverless", "paas"}:  # the platform's database: a copy off it
        files |= {".github/workflows/backup.yml"}
    if variant.service_tables:
        files |= {"tests/test_service_tables.py"}
    for service in variant.services:
        module = service.replace("-", "_")
        owned = TABLES if service in variant.service_tables else set()
        files |= {name.format(package="{package}", module=module) for name in SERVICE | owned}
    return {name.format(package=package) for name in files} | targets.files(variant)


def project_files(project: Path) -> dict[str, Path]:
    return {
        path.relative_to(project).as_posix(): path for path in project.rglob("*") if path.is_file()
    }


@named_too
def test_expected_files(render: Render, variant: Variant) -> None:
    project = render(variant)
    package = str(answers_of(project)["package_name"])
    assert set(project_files(project)) == expected_files(variant, package)


@variants
def test_no_unrendered_jinja(render: Render, variant: Variant) -> None:
    leftovers = {
        name: match.group(0)
        for name, path in project_files(render(variant)).items()
        if name != "uv.lock" and (match := UNRENDERED.search(path.read_text()))
    }
    assert leftovers == {}


@variants
def test_structured_files_parse(render: Render, variant: Variant) -> None:
    files = project_files(render(variant))
    parsed = [name for name, path in files.items() if path.suffix in PARSERS]
    for name in parsed:
        PARSERS[files[name].suffix](files[name].read_text())
    assert {".copier-answers.yml", "pyproject.toml", "compose.yaml", "uv.lock"} <= set(parsed)


@variants
def test_python_compiles(render: Render, variant: Variant) -> None:
    for name, path in project_files(render(variant)).items():
        if path.suffix == ".py":
            compile(path.read_text(), name, "exec")


@named_too
def test_ruff_is_clean(render: Render, variant: Variant) -> None:
    project = render(variant)
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = subprocess.run(
            [find_ruff_bin(), *command], cwd=project, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


@named_too
def test_answers_file_records_the_answers(render: Render, variant: Variant) -> None:
    answers = answers_of(render(variant))
    assert {key: answers[key] for key in variant.answers} == variant.answers
    assert Path(answers["_src_path"]).is_absolute()
    assert "_commit" in answers
