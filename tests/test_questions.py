"""The questionnaire: defaults, derived answers, and bad answers rejected before writing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pytest_copie.plugin import Copie

from .matrix import INVALID, QUESTIONS, Variant

BAD_ANSWERS = [
    ({"project_name": ""}, "project name must not be empty"),
    ({"project_name": "9 lives"}, "must start with a letter"),
    ({"project_slug": "Bad Slug"}, "slug must start with a lowercase letter"),
    ({"project_slug": "double--hyphen"}, "single hyphens"),
    ({"package_name": "my-package"}, "valid lowercase Python identifier"),
    ({"package_name": "redis"}, "would shadow a module"),
    ({"description": 'says "hi"'}, "must not contain double quotes"),
    ({"author_email": "nobody"}, "is not an e-mail address"),
    ({"github_owner": "-org"}, "GitHub owner has 1-39 letters"),
    ({"topology": "vm", "domain": "https://api.example.com"}, "is not a host name"),
    ({"topology": "k8s", "domain": "localhost"}, "is not a host name"),
    ({"topology": "k8s", "image": "ghcr.io/Acme/App:v1"}, "is not an image repository"),
    ({"embedding_dimensions": 4096}, "1 to 2000 dimensions"),
    (
        {"topology": "serverless", "serverless_platform": "vercel", "python_version": "3.11"},
        "Vercel's Python runtime needs Python 3.12",
    ),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=lambda value: str(value)[:40])
def test_bad_answers_are_rejected_before_writing(
    copie: Copie, answers: dict[str, Any], message: str
) -> None:
    result = copie.copy(extra_answers=answers)
    assert isinstance(result.exception, ValueError)
    assert message in str(result.exception)
    assert list(copie.test_dir.glob("copie*/*")) == []


@pytest.mark.parametrize("variant", INVALID, ids=lambda variant: variant.id)
def test_worker_without_redis_is_rejected(copie: Copie, variant: Variant) -> None:
    result = copie.copy(extra_answers=variant.answers)
    assert "The background worker needs Redis" in str(result.exception)
    assert list(copie.test_dir.glob("copie*/*")) == []


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
        key for key, q in asked.items() if q["type"] in {"str", "int"} and "choices" not in q
    }
    assert "project_name" in free_text
    assert {key for key in free_text if not questions[key].get("validator")} == set()
