"""Stateful stand-ins for the platforms a release talks to, shared by every target's tests.

A `Fakes` directory holds one fake platform: its state (state.json: deployments, what serves, the
database's schema revision, the release history and lock the platform stores), the log of every
call made to it (calls.jsonl), and its tools on PATH (bin/). Each tool is a shim that runs
`python -m tests.fakes TOOL ARGS`: the platform's module (tests/fakes/<platform>.py) applies the
call to the state as the platform would. An HTTP API (Railway's) is served from the test process
over the same state, through `Fakes.event`.

Tests inject faults into the Nth call that matches: fail it, pause it, or kill the release just
before or just after its effect (`Fakes.inject`). `Load` plays the users: while a release runs it
asks, a hundred times a second, whether each component serves something that can answer: an
artifact that exists, is healthy, and runs on a schema it was written for — its migrations' head,
or a newer one, by the expand/contract rule (a rollback leaves the newer schema in place).
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]  # the template repository: `tests` imports from here
RESULTS = ROOT / "build" / "scenario-results.jsonl"
# The release engine runs in a bare environment: what the tests give it, and nothing else.
BARE_PATH = os.pathsep.join(sorted({str(Path(sys.executable).parent), "/usr/bin", "/bin"}))

State = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Artifacts and the schema they need


def revisions(checkout: Path) -> list[str]:
    """The Alembic revisions of a checkout's migrations, oldest first (a linear history)."""
    parents: dict[str, str | None] = {}
    for path in checkout.glob("src/*/migrations/versions/*.py"):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
        parents[values["revision"]] = values.get("down_revision")
    ordered: list[str] = []
    current = next((r for r, parent in parents.items() if parent is None), None)
    while current is not None:
        ordered.append(current)
        current = next((r for r, parent in parents.items() if parent == current), None)
    return ordered


def artifact(checkout: Path, version: str, **extra: Any) -> dict[str, Any]:
    """What a platform builds from a checkout: its version label and the schema it needs."""
    known = revisions(checkout)
    return {"version": version, "head": known[-1] if known else None, "known": known, **extra}


def runs_on(artifact: dict[str, Any], revision: str | None) -> bool:
    """Whether an artifact's code answers on a database at `revision`.

    Its own head, or a revision it does not know (a newer release's, by expand/contract), will do;
    an older revision of its own history means its migrations have not run yet.
    """
    if revision is None:
        return artifact.get("head") is None
    return revision == artifact.get("head") or revision not in artifact.get("known", [])


def migrate(state: State, artifact: dict[str, Any], command: str) -> tuple[int, str]:
    """Run an artifact's migration command against the fake database: (exit code, output).

    `<program> migrate` keeps a newer schema; plain `alembic upgrade head` fails on one, as
    Alembic does when the database is at a revision it cannot locate.
    """
    database = state.setdefault("database", {"revision": None})
    current, known = database["revision"], artifact.get("known", [])
    if current is not None and current not in known:
        if command.split()[-1:] == ["migrate"]:
            return 0, f"the database is at revision {current}, which a newer release migrated to"
        return 1, f"Can't locate revision identified by '{current}'"
    database["revision"] = artifact.get("head")
    return 0, f"the database is at this release's revision {artifact.get('head')}"


# ---------------------------------------------------------------------------------------------
# The directory of a fake platform, as the tests and the shims see it


class ReleaseKilled(Exception):
    """An injected fault killed the release: the call it was making gets no answer."""


@dataclass
class Reply:
    """What a fake tool prints and how it exits."""

    stdout: str = ""
    stderr: str = ""
    code: int = 0


class Platform(Protocol):
    """A platform module: applies calls of its tools to the state.

    It may also define `run(fakes, tool, args) -> int | None` for calls that must answer before
    their input ends (a lock helper): a number is the call's exit code, None leaves it to
    `handle`.
    """

    def handle(self, state: State, tool: str, args: list[str], stdin: str) -> Reply:
        """Apply one call, as the platform would."""


@dataclass
class Fakes:
    """One fake platform on disk: state, call log, fault injections and the tools' shims."""

    root: Path
    platform: str  # the module under tests/fakes/ that answers the tools
    tools: tuple[str, ...]

    def __post_init__(self) -> None:
        (self.root / "bin").mkdir(parents=True, exist_ok=True)
        for tool in self.tools:
            shim = self.root / "bin" / tool
            # -P: the project the release runs in has a `tests` package of its own.
            shim.write_text(f'#!/bin/sh\nexec {sys.executable} -P -m tests.fakes {tool} "$@"\n')
            shim.chmod(0o755)
        if not (self.root / "state.json").exists():
            self.save({"events": 0, "injections": []})

    @property
    def env(self) -> dict[str, str]:
        """What a release needs to reach this platform and nothing else."""
        return {
            "PATH": os.pathsep.join([str(self.root / "bin"), BARE_PATH]),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "FAKES_ROOT": str(self.root),
            "FAKES_PLATFORM": self.platform,
            "PYTHONPATH": str(ROOT),
        }

    # The state, read and changed under a lock shared with the shims.

    @contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[None]:
        with (self.root / "state.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield

    def load(self) -> State:
        state: State = json.loads((self.root / "state.json").read_text())
        return state

    def save(self, state: State) -> None:
        staged = self.root / "state.json.next"
        staged.write_text(json.dumps(state, indent=1))
        staged.replace(self.root / "state.json")

    def state(self) -> State:
        """A snapshot of the state."""
        with self.locked(shared=True):
            return self.load()

    def update(self, change: Callable[[State], None]) -> None:
        """Change the state, as a test sets a platform up."""
        with self.locked():
            state = self.load()
            change(state)
            self.save(state)

    def calls(self, tool: str | None = None) -> list[list[str]]:
        """Every call made so far ([tool, *args]), or the arguments of each call of `tool`."""
        log = self.root / "calls.jsonl"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [call[1:] for call in calls if call[0] == tool] if tool else calls

    # Faults

    def inject(
        self,
        effect: str,
        *,
        match: str = "",
        nth: int = 1,
        seconds: float = 0,
        output: str = "injected failure",
    ) -> None:
        """Act on the `nth` call whose command line contains `match` (any call, if empty).

        effect: "fail" (exit 1 without effect), "pause" (sleep `seconds`, then apply it),
        "kill-before" or "kill-after" (SIGKILL the release before or after applying it).
        """
        rule = {"effect": effect, "match": match, "nth": nth, "seconds": seconds}
        self.update(lambda state: state["injections"].append({**rule, "output": output}))

    def event(self, tool: str, args: list[str], apply: Callable[[State], Reply]) -> Reply:
        """Log a call, apply its injections and `apply` it to the state (shims and HTTP APIs)."""
        line = " ".join([tool, *args])
        with self.locked():
            state = self.load()
            state["events"] += 1
            with (self.root / "calls.jsonl").open("a") as log:
                log.write(json.dumps([tool, *args]) + "\n")
            rule = None
            for candidate in state["injections"]:
                if candidate["match"] in line:
                    candidate["seen"] = candidate.get("seen", 0) + 1
                    if candidate["seen"] == candidate["nth"]:
                        rule = candidate
            self.save(state)
        if rule and rule["effect"] == "fail":
            return Reply(stderr=f"{rule['output']}\n", code=1)
        if rule and rule["effect"] == "pause":
            time.sleep(rule["seconds"])
        if rule and rule["effect"] == "kill-before":
            self.kill_release()
        with self.locked():
            state = self.load()
            reply = apply(state)
            self.save(state)
        if rule and rule["effect"] == "kill-after":
            self.kill_release()
        return reply

    def kill_release(self) -> None:
        """SIGKILL the release under way (its process id is in release.pid)."""
        os.kill(int((self.root / "release.pid").read_text()), signal.SIGKILL)
        raise ReleaseKilled

    # Releases

    def release(
        self, project: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's release engine (what `nox -s deploy|rollback` runs) to the end."""
        process = self.start(project, *args, env=env)
        stdout, stderr = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def start(
        self, project: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start the release engine in the background; its process id goes to release.pid."""
        pid_file = self.root / "release.pid"
        # The engine writes its own id, then becomes the engine: a fault can kill exactly it.
        start = (
            "import os, sys; "
            f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "os.execv(sys.executable, [sys.executable, '-m', 'scripts.deploy', *sys.argv[1:]])"
        )
        return subprocess.Popen(
            [sys.executable, "-c", start, *args],
            cwd=project,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def main(tool: str, args: list[str]) -> int:
    """A shim's call: answer it from the platform module named by FAKES_PLATFORM."""
    from importlib import import_module

    fakes = Fakes(Path(os.environ["FAKES_ROOT"]), os.environ["FAKES_PLATFORM"], ())
    platform: Platform = import_module(f"tests.fakes.{fakes.platform}")  # type: ignore[assignment]
    # A tool that must answer before its input ends (a lock held until then) runs on its own.
    own = getattr(platform, "run", None)
    if own is not None and (code := own(fakes, tool, args)) is not None:
        return int(code)
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    try:
        reply = fakes.event(tool, args, lambda state: platform.handle(state, tool, args, stdin))
    except ReleaseKilled:
        return 137
    sys.stdout.write(reply.stdout)
    sys.stderr.write(reply.stderr)
    return reply.code


# ---------------------------------------------------------------------------------------------
# Users


@dataclass
class Load:
    """Simulated users: polls what serves, counting answers that could not have been given."""

    fakes: Fakes
    serving: Callable[[State], dict[str, dict[str, Any] | None]]
    interval: float = 0.01
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check(self) -> None:
        """One round of requests: one per component."""
        state = self.fakes.state()
        revision = state.get("database", {}).get("revision")
        for component, running in self.serving(state).items():
            self.requests += 1
            if running is None:
                self.failures.append(f"{component}: nothing serves")
            elif not running.get("healthy", True):
                self.failures.append(f"{component}: {running['version']} is broken")
            elif not runs_on(running, revision):
                self.failures.append(
                    f"{component}: {running['version']} needs {running.get('head')}, "
                    f"the database is at {revision}"
                )

    def __enter__(self) -> Load:
        def poll() -> None:
            while not self._stop.wait(self.interval):
                self.check()

        self.check()
        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.check()


def record(scenario: str, target: str, load: Load) -> None:
    """Append a scenario's figures to build/scenario-results.jsonl."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "scenario": scenario,
        "target": target,
        "requests": load.requests,
        "failed": len(load.failures),
    }
    with RESULTS.open("a") as file:
        file.write(json.dumps(entry) + "\n")


def words(call: list[str]) -> str:
    """A call as one line, for matching."""
    return " ".join(call)


def option(args: list[str], *names: str) -> str | None:
    """The value of `--name=value`, `--name value` or `-n value` in a command line."""
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


__all__ = [
    "Fakes",
    "Load",
    "ReleaseKilled",
    "Reply",
    "State",
    "artifact",
    "migrate",
    "option",
    "record",
    "revisions",
    "runs_on",
    "words",
]
