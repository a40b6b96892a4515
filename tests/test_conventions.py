"""The template's own conventions check (tasks/check_template.py) catches what it is for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from .matrix import QUESTIONS, ROOT


@pytest.fixture(scope="module")
def check_template() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_template", ROOT / "tasks/check_template.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Four branches on `worker`, one of each kind the check counts, and one on `redis`.
BRANCHY = """\
{%- if worker %}
import saq
{%- elif redis %}
import redis
{%- endif %}
QUEUE = {{ '"jobs"' if worker else 'None' }}
{%- if worker and pgvector %}
EMBED = True
{%- elif worker %}
EMBED = False
{%- endif %}
"""


def write(template: Path, name: str, text: str) -> None:
    path = template / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_more_than_three_branches_on_one_answer_are_reported(
    check_template: ModuleType, tmp_path: Path
) -> None:
    template = tmp_path / "template"
    write(template, "src/{{package_name}}/jobs.py.jinja", BRANCHY)
    # The same in a file that does not render to Python, and three branches in one that does.
    write(template, "README.md.jinja", BRANCHY)
    write(
        template, "{% if worker %}worker.py{% endif %}.jinja", BRANCHY.split("{%- if worker and")[0]
    )
    found = check_template.variant_branches(QUESTIONS, template)
    assert found == [
        "template/src/{{package_name}}/jobs.py.jinja: 4 branches on 'worker' (at most 3): split "
        "the variant into files of its own or a dependency"
    ]


def test_the_template_keeps_the_conventions(check_template: ModuleType) -> None:
    assert check_template.problems() == []
