"""The questionnaire: defaults, derived answers, and bad answers rejected before writing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_copie.plugin import Copie

from .matrix import INVALID, QUESTIONS, ROOT, Variant

# Each bad answer, the question Copier's error must name, and what the message says.
BAD_ANSWERS = [
    ({"project_name": ""}, "project_name", "project name must not be empty"),
    ({"project_name": "9 lives"}, "project_name", "must start with a letter"),
    ({"project_slug": "Bad Slug"}, "project_slug", "slug must start with a lowercase letter"),
    ({"project_slug": "double--hyphen"}, "project_slug", "single hyphens"),
    ({"package_name": "my-package"}, "package_name", "valid lowercase Python identifier"),
    ({"package_name": "redis"}, "package_name", "would shadow a module"),
    ({"package_name": "a" * 41}, "package_name", "at most 40 characters"),
    ({"description": 'says "hi"'}, "description", "must not contain double quotes"),
    ({"author_email": "nobody"}, "author_email", "is not an e-mail address"),
    ({"github_owner": "-org"}, "github_owner", "GitHub owner has 1-39 letters"),
    ({"python_version": "3.10"}, "python_version", "'3.10' is not in ['3.11', '3.12', '3.13']"),
    ({"topology": "cloud"}, "topology", "'cloud' is not in"),
    ({"topology": "vm", "domain": "https://api.example.com"}, "domain", "is not a host name"),
    ({"topology": "k8s", "domain": "localhost"}, "domain", "is not a host name"),
    ({"topology": "k8s", "image": "ghcr.io/Acme/App:v1"}, "image", "is not an image repository"),
    ({"embedding_dimensions": 4096}, "embedding_dimensions", "1 to 2000 dimensions"),
    # Answers that are no number at all: Copier's int() would fail without naming the question.
    ({"embedding_dimensions": "abc"}, "embedding_dimensions", "must be a whole number"),
    ({"embedding_dimensions": "12.5"}, "embedding_dimensions", 'not "12.5"'),
    ({"embedding_dimensions": ""}, "embedding_dimensions", "must be a whole number"),
    # Text that reads as neither yes nor no: Copier alone would take it for yes.
    ({"pgvector": "sure"}, "pgvector", 'a yes/no question: answer true or false, not "sure"'),
    ({"redis": "nope"}, "redis", "redis is a yes/no question"),
    ({"worker": "maybe"}, "worker", "worker is a yes/no question"),
    ({"topology": "vm", "monitoring": "later"}, "monitoring", "monitoring is a yes/no question"),
    ({"topology": "k8s", "services": "search"}, "services", "must be a list of names"),
    ({"topology": "k8s", "services": None}, "services", "must be a list of names"),
    ({"topology": "k8s", "services": ["Search"]}, "services", 'The service name "Search" must'),
    ({"topology": "k8s", "services": ["a" * 21]}, "services", "at most 20 characters"),
    ({"topology": "k8s", "services": ["search", "worker"]}, "services", "a component every"),
    ({"topology": "k8s", "services": ["migrate"]}, "services", "a component every"),
    ({"topology": "k8s", "services": ["on"]}, "services", "reads as a boolean or null"),
    ({"topology": "k8s", "services": ["metrics"]}, "services", '"metrics" is taken by a part'),
    ({"topology": "k8s", "services": ["egress-https"]}, "services", "is taken by a part"),
    ({"topology": "paas", "services": ["database"]}, "services", "is taken by a part"),
    ({"topology": "vm", "services": ["redis"]}, "services", "is taken by a part"),
    ({"topology": "k8s", "services": ["my-service"]}, "services", "the project's own name"),
    ({"topology": "k8s", "services": ["my_service"]}, "services", "single hyphens"),
    ({"topology": "k8s", "services": ["a", "b", "a"]}, "services", '"a" is listed twice'),
    (
        {"topology": "serverless", "serverless_platform": "vercel", "services": ["search"]},
        "services",
        "Extra services run on the k8s, vm and paas topologies",
    ),
    (
        {"topology": "serverless", "serverless_platform": "modal", "services": ["search"]},
        "services",
        "topology serverless deploys the API only: answer services=[] or another topology",
    ),
    (
        {"topology": "k8s", "services": ["search"], "service_tables": "search"},
        "service_tables",
        'must be a list of names, e.g. [memory], not "search"',
    ),
    (
        {"topology": "vm", "services": ["search"], "service_tables": ["search", "memory"]},
        "service_tables",
        '"memory" is not one of the services (search): only a listed service can own tables.',
    ),
    (
        {"topology": "serverless", "serverless_platform": "vercel", "python_version": "3.11"},
        "serverless_platform",
        "Vercel's Python runtime needs Python 3.12",
    ),
]


def names(question: str, error: BaseException | str) -> bool:
    """Whether Copier's message names the question (its validation and choice errors do)."""
    text = str(error)
    return f"question '{question}'" in text or f"choice for '{question}'" in text


@pytest.mark.parametrize(
    ("answers", "question", "message"), BAD_ANSWERS, ids=lambda value: str(value)[:40]
)
def test_bad_answers_are_rejected_naming_the_question(
    copie: Copie, answers: dict[str, Any], question: str, message: str
) -> None:
    result = copie.copy(extra_answers=answers)
    assert isinstance(result.exception, ValueError)
    assert names(question, result.exception), result.exception
    assert message in str(result.exception)
    assert list(copie.test_dir.glob("copie*/*")) == []


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("embedding_dimensions=abc", "embedding_dimensions"),
        ("python_version=3.10", "python_version"),
        ("worker=maybe", "worker"),
        ("services=[search, search]", "services"),
        # Asked only with services; an answer given without them is checked all the same.
        ("service_tables=[memory]", "service_tables"),
    ],
)
def test_the_cli_names_the_question_of_a_bad_answer(
    tmp_path: Path, answer: str, question: str
) -> None:
    destination = tmp_path / "service"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD"),
            *("--data", answer, str(ROOT), str(destination)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    # Copier prints a traceback; its last line is the message, and it names the question.
    last = result.stderr.strip().splitlines()[-1]
    assert names(question, last), result.stderr[-2000:]
    assert not destination.exists() or list(destination.iterdir()) == []


@pytest.mark.parametrize("variant", INVALID, ids=lambda variant: variant.id)
def test_worker_without_redis_is_rejected(copie: Copie, variant: Variant) -> None:
    result = copie.copy(extra_answers=variant.answers)
    assert "The background worker needs Redis" in str(result.exception)
    assert list(copie.test_dir.glob("copie*/*")) == []


@pytest.mark.parametrize(("given", "meant"), [("yes", True), (" Off", False), ("1", True)])
def test_yes_and_no_may_be_written_as_text(copie: Copie, given: str, meant: bool) -> None:
    result = copie.copy(extra_answers={"pgvector": given})
    assert result.exception is None, result.exception
    assert result.project_dir is not None
    answers = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    assert answers["pgvector"] is meant


def test_defaults_and_derived_names(copie: Copie) -> None:
    result = copie.copy(extra_answers={"project_name": "Acme Search API"})
    assert result.exception is None
    assert result.project_dir is not None
    answers = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "acme-search-api"
    assert answers["package_name"] == "acme_search_api"
    assert answers["image"] == "ghcr.io/your-org/acme-search-api"
    assert answers["topology"] == QUESTIONS["topology"]["default"]
    assert (result.project_dir / "src/acme_search_api/app.py").is_file()


def test_every_question_has_help_and_free_text_a_validator() -> None:
    questions = {key: q for key, q in QUESTIONS.items() if not key.startswith("_")}
    asked = {key: q for key, q in questions.items() if q.get("when") is not False}
    assert all(q.get("help") for q in asked.values())
    free_text = {
        key
        for key, q in asked.items()
        if q["type"] in {"str", "int", "float", "yaml", "json"} and "choices" not in q
    }
    assert {"project_name", "embedding_dimensions"} <= free_text
    assert {key for key in free_text if not questions[key].get("validator")} == set()


def test_no_asked_question_is_cast_by_copier_without_naming_it() -> None:
    # Copier's int() and float() casts fail with Python's message alone; numbers are `type: yaml`
    # with a validator that names the question (see embedding_dimensions).
    asked = {
        key: q
        for key, q in QUESTIONS.items()
        if not key.startswith("_") and q.get("when") is not False
    }
    assert {key for key, q in asked.items() if q["type"] in {"int", "float"}} == set()


def test_readme_command_1_installs_the_tools_the_next_steps_run() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"# 1\..*\n(.+)\n```", readme)
    assert match, "README.md has no command 1"
    command = match.group(1)
    pip = re.search(r"pip install -q ([^&]+)&&", command)
    assert pip, command
    installed = set(pip.group(1).split())
    assert ". .venv/bin/activate" in command  # the shell keeps them on PATH
    steps = QUESTIONS["_message_after_copy"].split("Next steps:", 1)[1]
    tools = {line.split()[0] for line in steps.splitlines() if line.startswith("    ")}
    assert tools - {"cd", "git"} <= installed, (tools, installed)
