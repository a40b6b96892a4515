"""Template conventions that linters can't see (run by `nox -s lint`).

- A file ends in `.jinja` exactly when its content is rendered: verbatim files stay verbatim.
- copier.yml parses, and every question people answer has help text.
- `.ci/run` runs the README's test command verbatim.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template"
JINJA = re.compile(r"(?<!\$)\{\{|\{%|\{#")  # `${{ }}` is a GitHub expression, not Jinja


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
