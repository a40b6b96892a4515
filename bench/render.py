"""Render time: Slipway through the copier CLI, a one-file floor, and a reference template."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .context import Run, check_output
from .project import ROOT, copier_copy, count_files

TEMPLATES = Path(__file__).parent / "templates"
STAND_IN = "cookie-shaped stand-in"
# scientific-python/cookie asks these without defaults; the rest take its first choice.
COOKIE_ANSWERS = {
    "project_name": "cookie-bench",
    "org": "bench",
    "full_name": "Bench Mark",
    "email": "bench@example.com",
    "license": "BSD",
    "backend": "hatch",
    "docs": "sphinx",
    "vcs": "true",
}
GIT = ["git", "-c", "user.name=Slipway bench", "-c", "user.email=bench@localhost"]

METHOD = [
    "**render**: `copier copy --defaults --trust --vcs-ref=HEAD` (the CLI, as users run it) of "
    "Slipway with its task (`uv lock`) and with `--skip-tasks`, of a one-file template (the "
    "floor: what any render costs) and of the reference, one after the other every round. "
    "`.per_file` divides by the files rendered (`.files`, version control data left out); "
    "`.above_floor_per_file` first takes away the floor of the same round, which is mostly the "
    "CLI's start and the template's clone, so that large and small templates compare fairly.",
]


@dataclass(frozen=True)
class Template:
    """A template the bench renders: where it is, and the answers and options it needs."""

    key: str  # the figure's name: render.<key>
    source: Path
    options: tuple[str, ...] = ()
    data: dict[str, str] = field(default_factory=dict)


def snapshot(source: Path, dst: Path) -> Path:
    """`source` copied to `dst` as a one-commit git repository (copier renders a git ref)."""
    shutil.copytree(source, dst)
    check_output([*GIT, "init", "--quiet"], cwd=dst, timeout=60)
    check_output([*GIT, "add", "--all"], cwd=dst, timeout=60)
    check_output([*GIT, "commit", "--quiet", "--message", "snapshot"], cwd=dst, timeout=60)
    return dst


def clone(source: str, dst: Path) -> str:
    """Clone a checkout (a path or URL) to `dst`: the label `scientific-python/cookie@<sha>`."""
    check_output(["git", "clone", "--quiet", source, dst], timeout=300)
    head = check_output(["git", "rev-parse", "--short", "HEAD"], cwd=dst, timeout=60).strip()
    return f"scientific-python/cookie@{head}"


class RenderBench:
    """Renders each template once a round, interleaved."""

    method = METHOD

    def __init__(self, run: Run, cookie: str | None) -> None:
        self.run, self.cookie = run, cookie
        self.reference = STAND_IN

    def setup(self) -> None:
        """Snapshot the floor and the stand-in, or clone the cookie checkout."""
        templates = self.run.path("templates")
        floor = snapshot(TEMPLATES / "floor", templates / "floor")
        if self.cookie:
            reference = templates / "cookie"
            self.reference = clone(self.cookie, reference)
            answers = COOKIE_ANSWERS
        else:
            reference = snapshot(TEMPLATES / "standin", templates / "standin")
            answers = {}
        self.templates = [
            Template("slipway.skip_tasks", ROOT, ("--skip-tasks",)),
            Template("reference", reference, data=answers),
            Template("floor", floor),
            Template("slipway.tasks", ROOT),
        ]
        self.run.say(f"reference template: {self.reference}")

    def round(self) -> None:
        """Render every template once: seconds, files, seconds per file (above the floor too)."""
        rendered = {}
        for template in self.templates:
            dst = self.run.path("renders", f"{template.key}-{self.run.round}")
            seconds = copier_copy(template.source, dst, *template.options, data=template.data)
            files = rendered[template.key] = count_files(dst)
            shutil.rmtree(dst)
            name = f"render.{template.key}"
            self.run.record(name, seconds, "s", f" ({files} files)")
            self.run.figures.add(f"{name}.files", files, "files")
            self.run.figures.add(f"{name}.per_file", seconds / files, "s")
        floor = self.run.figures.latest("render.floor")
        for key, files in rendered.items():
            if key != "floor":
                above = (self.run.figures.latest(f"render.{key}") - floor) / files
                self.run.figures.add(f"render.{key}.above_floor_per_file", above, "s")
