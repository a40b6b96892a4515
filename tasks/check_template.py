"""Template conventions that linters can't see (run by `nox -s lint`).

- A file ends in `.jinja` exactly when its content is rendered: verbatim files stay verbatim.
- copier.yml parses, and every question people answer has help text.
- `.ci/run` runs the README's test command verbatim.
- No Python file branches more than MAX_BRANCHES times on one answer: a variant that needs more
  is a file of its own (a conditional file name) or a dependency that has two implementations.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template"
JINJA = re.compile(r"(?<!\$)\{\{|\{%|\{#")  # `${{ }}` is a GitHub expression, not Jinja
# A branch's condition: `{% if c %}` and `{% elif c %}` (with or without `-`), and an inline
# `{{ a if c else b }}`.
BRANCH = re.compile(
    r"\{%-?\s*(?:el)?if\s(.*?)-?%\}|\{\{-?(?:(?!\}\}).)*?\sif\s((?:(?!\}\}).)*?)-?\}\}", re.DOTALL
)
NAME = re.compile(r"[A-Za-z_]\w*")
MAX_BRANCHES = 3


def variant_branches(questions: dict[str, object], template: Path = TEMPLATE) -> list[str]:
    """Python templates with more than MAX_BRANCHES branches (`if`, `elif`, inline `if`) on one
    answer (named in the condition), counting files whose rendered name ends in `.py`,
    conditional names included."""
    answers = {key for key in questions if not key.startswith("_")}
    found = []
    for path in sorted(template.rglob("*.jinja")):
        if not re.sub(r"\{%.*?%\}", "", path.name).removesuffix(".jinja").endswith(".py"):
            continue
        branches: Counter[str] = Counter()
        for tag, inline in BRANCH.findall(path.read_text()):
            branches.update(answers.intersection(NAME.findall(tag or inline)))
        found += [
            f"{path.relative_to(template.parent).as_posix()}: {count} branches on {answer!r} (at "
            f"most {MAX_BRANCHES}): split the variant into files of its own or a dependency"
            for answer, count in sorted(branches.items())
            if count > MAX_BRANCHES
        ]
    return found


def problems() -> list[str]:
    """Every convention broken, one line each."""
    found = []
    for path in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        name = path.relative_to(ROOT).as_posix()
        has_jinja = bool(JINJA.search(path.read_text()))
        if path.suffix == ".jinja" and not has_jinja:
            found.append(f"{name}: renders nothing; drop the .jinja suffix")
        elif path.suffix != ".jinja" and has_jinja:
            found.append(f"{name}: contains Jinja but is copied verbatim; add the .jinja suffix")
    questions = yaml.safe_load((ROOT / "copier.yml").read_text())
    for key, question in questions.items():
        asked = not key.startswith("_") and question.get("when") is not False
        if asked and not question.get("help"):
            found.append(f"copier.yml: question {key!r} has no help text")
    found += variant_branches(questions)
    readme = (ROOT / "README.md").read_text()
    test_command = re.search(r"# 2\..*\n(.+)\n```", readme)
    ci_run = (ROOT / ".ci/run").read_text().splitlines()
    if test_command is None or test_command.group(1) not in ci_run:
        found.append(".ci/run: does not run the README's test command (command 2) verbatim")
    return found


def main() -> int:
    """Print the problems; fail if there are any."""
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
