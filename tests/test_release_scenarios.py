"""What every release does when things go wrong, on each platform's stateful fake.

The same scenarios for every deploy target that has a fake platform (tests/fakes/<target>.py):
rolling back across a migration, rolling back twice and a third time, a deploy killed at each of
its calls and run again, two deploys at once, and a second component that fails to deploy. While
each runs, `Load` checks a hundred times a second that every component serves something that can
answer; build/scenario-results.jsonl gets the counts. The single VM runs the same scenarios for
real, in the e2e tier (tests/test_vm_e2e.py).
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from .conftest import Render
from .fakes import Fakes, Load, State, record
from .matrix import WITH_SERVICES, Variant, full_variant
from .repos import EXPAND, git

pytestmark = pytest.mark.scenarios

ENVIRONMENT = "staging"
PACKAGE = "my_service"


class Target(Protocol):
    """How the scenarios drive one platform's fake (each tests/fakes/<target>.py has `TARGET`)."""

    name: str  # the deploy target, as the variant matrix names it
    tools: tuple[str, ...]  # the CLIs the fake puts on PATH
    components: tuple[str, ...]  # what a release switches, in its order
    while_locked: str  # part of a call a deploy makes while it holds the release lock

    def prepare(self, fakes: Fakes, project: Path) -> dict[str, str]:
        """Set up an empty platform; the variables and credentials a release needs."""

    def publish(self, fakes: Fakes, checkout: Path, version: str) -> None:
        """What CI does before a deploy of `version` (push its image); nothing if it builds."""

    def serving(self, state: State) -> dict[str, dict[str, Any] | None]:
        """The artifact each component serves now (None: nothing)."""

    def history(self, state: State) -> list[dict[str, Any]]:
        """The environment's release history as the platform stores it, oldest first."""

    def locked(self, state: State) -> bool:
        """Whether the environment's release lock is held."""

    def break_component(self, fakes: Fakes, component: str) -> None:
        """Inject the fault that makes switching `component` to a new release fail."""


def targets() -> list[str]:
    """The deploy targets that have a fake platform."""
    modules = (Path(__file__).parent / "fakes").glob("[!_]*.py")
    return sorted(path.stem for path in modules if load_target(path.stem) is not None)


def load_target(name: str) -> Any:
    return getattr(importlib.import_module(f"tests.fakes.{name}"), "TARGET", None)


@dataclass
class Repository:
    """A git repository of the project with one commit per release: v1, v2 (+ migration), v3."""

    path: Path

    def checkout(self, version: str) -> Path:
        git(self.path, "checkout", "-q", version)
        return self.path


def make_repository(project: Path, directory: Path) -> Repository:
    repo = directory / "repo"
    shutil.copytree(project, repo, ignore=shutil.ignore_patterns(".nox", "__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1")
    (repo / f"src/{PACKAGE}/migrations/versions/0002_summary.py").write_text(EXPAND)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v2: documents.summary")
    git(repo, "tag", "v2")
    (repo / "CHANGES.md").write_text("v3\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v3")
    git(repo, "tag", "v3")
    return Repository(repo)


@dataclass
class Scene:
    """One target's fake platform and project repository, ready for releases."""

    target: Target
    fakes: Fakes
    repo: Repository
    env: dict[str, str]

    def release(self, action: str, *args: str, checkout: str = "v3") -> Any:
        """Run a deploy (`args` starts with the version) or a rollback from a checkout."""
        if action == "deploy":
            version, *rest = args
            self.target.publish(self.fakes, self.repo.checkout(version), version)
            project = self.repo.checkout(version)
            return self.fakes.release(
                project, "deploy", ENVIRONMENT, "--version", version, *rest, env=self.env
            )
        return self.fakes.release(
            self.repo.checkout(checkout), "rollback", ENVIRONMENT, *args, env=self.env
        )

    def deploy(self, *versions: str) -> None:
        for version in versions:
            result = self.release("deploy", version)
            assert result.returncode == 0, result.stdout + result.stderr

    def serving(self) -> dict[str, str | None]:
        """The version each component serves."""
        state = self.fakes.state()
        return {c: (a or {}).get("version") for c, a in self.target.serving(state).items()}

    def everywhere(self, version: str) -> dict[str, str]:
        return dict.fromkeys(self.target.components, version)

    def recorded(self) -> list[tuple[str, str]]:
        """The history: (action, version) of each entry."""
        return [(e["action"], e["version"]) for e in self.target.history(self.fakes.state())]

    def load(self) -> Load:
        return Load(self.fakes, self.target.serving)


def scene(render: Render, name: str, directory: Path) -> Scene:
    target: Target = load_target(name)
    variant = scenario_variant(name)
    repo = make_repository(render(variant), directory)
    fakes = Fakes(directory / "platform", name, target.tools)
    env = target.prepare(fakes, repo.path)
    return Scene(target, fakes, repo, env)


def scenario_variant(name: str) -> Variant:
    """What a target's scenarios release: its variant with the extra services where it runs
    them, else its variant with every feature."""
    extra = [variant for variant in WITH_SERVICES if variant.deploy_target == name]
    return extra[0] if extra else full_variant(name)


each_target = pytest.mark.parametrize("name", targets())


@each_target
def test_rollback_across_a_migration(render: Render, name: str, tmp_path: Path) -> None:
    scene_ = scene(render, name, tmp_path)
    scene_.deploy("v1")
    with scene_.load() as load:
        scene_.deploy("v2")  # adds documents.summary
        back = scene_.release("rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        # v1 serves on v2's schema: reads and writes work (`Load` checks every component).
        assert scene_.serving() == scene_.everywhere("v1")
        assert scene_.fakes.state()["database"]["revision"] == "0002"
        scene_.deploy("v3")
        assert scene_.serving() == scene_.everywhere("v3")
    record("rollback across a migration", name, load)
    assert load.failures == []
    assert scene_.recorded()[-3:] == [("deploy", "v2"), ("rollback", "v1"), ("deploy", "v3")]


@each_target
def test_two_rollbacks_walk_back_and_a_third_refuses(
    render: Render, name: str, tmp_path: Path
) -> None:
    scene_ = scene(render, name, tmp_path)
    scene_.deploy("v1")
    with scene_.load() as load:
        scene_.deploy("v2", "v3")
        for expected in ("v2", "v1"):
            back = scene_.release("rollback")
            assert back.returncode == 0, back.stdout + back.stderr
            assert scene_.serving() == scene_.everywhere(expected)
        third = scene_.release("rollback")
        assert third.returncode != 0
        assert "no earlier release to roll back to" in third.stderr
        assert scene_.serving() == scene_.everywhere("v1")
    record("three rollbacks after v1, v2, v3", name, load)
    assert load.failures == []
    assert not scene_.target.locked(scene_.fakes.state())


@each_target
def test_a_deploy_killed_at_each_call_then_run_again(
    render: Render, name: str, tmp_path: Path
) -> None:
    rehearsal = scene(render, name, tmp_path / "rehearsal")
    rehearsal.deploy("v1")
    before = len(rehearsal.fakes.calls())
    rehearsal.deploy("v2")
    calls = len(rehearsal.fakes.calls()) - before
    assert calls > 3

    totals = Load(rehearsal.fakes, rehearsal.target.serving)
    for nth in range(1, calls + 1):
        for when in ("before", "after"):
            scene_ = scene(render, name, tmp_path / f"{nth}-{when}")
            scene_.deploy("v1")
            scene_.fakes.inject(f"kill-{when}", nth=nth)
            with scene_.load() as load:
                killed = scene_.release("deploy", "v2")
                assert killed.returncode == -9, f"call {nth} {when}: {killed.stdout}"
                again = scene_.release("deploy", "v2")
                assert again.returncode == 0, f"call {nth} {when}:\n{again.stdout}{again.stderr}"
            where = f"killed {when} call {nth} of {calls}"
            assert load.failures == [], where
            assert scene_.serving() == scene_.everywhere("v2"), where
            history = scene_.target.history(scene_.fakes.state())
            assert history[-1]["version"] == "v2", where
            assert history[-1]["previous"] == history[0]["number"], where
            assert not scene_.target.locked(scene_.fakes.state()), where
            totals.requests += load.requests
    record(f"deploy killed at each of its {calls} calls, then run again", name, totals)


@each_target
def test_two_deploys_at_once(render: Render, name: str, tmp_path: Path) -> None:
    scene_ = scene(render, name, tmp_path)
    scene_.deploy("v1")
    pause = scene_.target.while_locked
    # The first deploy pauses while it holds the lock; the second starts meanwhile.
    scene_.fakes.inject("pause", match=pause, nth=1, seconds=4)
    first_env = {**scene_.env, "GITHUB_RUN_ID": "1111", "GITHUB_REPOSITORY": "acme/svc"}
    with scene_.load() as load:
        scene_.target.publish(scene_.fakes, scene_.repo.checkout("v2"), "v2")
        calls = len(scene_.fakes.calls())
        first = scene_.fakes.start(
            scene_.repo.checkout("v2"), "deploy", ENVIRONMENT, "--version", "v2", env=first_env
        )
        for _ in range(100):
            if any(pause in " ".join(call) for call in scene_.fakes.calls()[calls:]):
                break
            time.sleep(0.05)
        second = scene_.fakes.release(
            scene_.repo.path, "deploy", ENVIRONMENT, "--version", "v3", env=scene_.env
        )
        out, err = first.communicate(timeout=300)
    record("two deploys at once", name, load)
    assert second.returncode != 0
    assert f"{ENVIRONMENT} is being released by" in second.stderr
    assert "actions/runs/1111" in second.stderr
    assert first.returncode == 0, out + err
    assert scene_.serving() == scene_.everywhere("v2")
    assert load.failures == []


@each_target
def test_a_component_that_fails_leaves_the_previous_release_everywhere(
    render: Render, name: str, tmp_path: Path
) -> None:
    scene_ = scene(render, name, tmp_path)
    scene_.deploy("v1")
    last = scene_.target.components[-1]
    scene_.target.break_component(scene_.fakes, last)
    with scene_.load() as load:
        failed = scene_.release("deploy", "v2")
    record(f"{last} fails to deploy", name, load)
    assert failed.returncode != 0
    assert "v1 serves as before" in failed.stderr
    assert scene_.serving() == scene_.everywhere("v1")
    assert scene_.recorded() == [("deploy", "v1")]
    assert load.failures == []
    assert not scene_.target.locked(scene_.fakes.state())
