"""The release model every target shares: what a release is, and an environment's history of them.

A release is a version label (the one `nox -s deploy` prints, `GET /version` reports and
`nox -s rollback` takes), the artifact each component runs (an image, a deployment), and the
Alembic revision its code needs. Each environment keeps an append-only history where target stores
it (a file on the VM, a ConfigMap, a Modal volume, a Railway variable, deployment metadata); deploys
and rollbacks are recorded as what they are.

Each deploy records the release that served before it. Rolling back follows that link from the
release serving now, so two rollbacks in a row walk back two releases, a release that was rolled
back is never gone back to by default, and the first release has nothing before it.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from . import DeployError

PROJECT = Path(__file__).resolve().parents[2]
KEPT = 100  # entries an environment keeps; older releases can no longer be rolled back to


@dataclass(frozen=True)
class Entry:
    """One line of an environment's history: a deploy, or a rollback."""

    number: int
    action: Literal["deploy", "rollback"]
    version: str
    # What each component (api, worker, ...) runs in this release.
    artifacts: Mapping[str, str]
    # The Alembic revision the release's code was written for (its migrations' head).
    revision: str | None
    # A deploy: the release it replaced (None for the first). A rollback: the release undone.
    previous: int | None
    # A rollback: the deploy whose release serves again.
    restores: int | None = None
    commit: str | None = None
    time: str = ""
    by: str = ""
    # Whatever else a target needs to find the release again (the VM's colour, a URL).
    details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The entry as one line of JSON."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Entry:
        """An entry from its line; DeployError if the line is not one."""
        try:
            data: dict[str, Any] = json.loads(line)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            msg = f"a line of the release history is not a release ({exc}): {line[:200]!r}"
            raise DeployError(msg) from None

    def __str__(self) -> str:
        return f"{self.version} (#{self.number}, {self.action} {self.time} by {self.by})"


@dataclass(frozen=True)
class History:
    """The releases of one environment, oldest first; a dry run makes up what it cannot read."""

    environment: str
    entries: tuple[Entry, ...] = ()
    dry_run: bool = False

    @classmethod
    def parse(cls, environment: str, text: str, *, dry_run: bool = False) -> History:
        """A history from its JSON lines (empty text: no release yet)."""
        if dry_run:
            return cls.assumed(environment)
        entries = tuple(Entry.from_json(line) for line in text.splitlines() if line.strip())
        return cls(environment, entries)

    @classmethod
    def assumed(cls, environment: str) -> History:
        """What a dry run shows instead of the history it does not read: two releases."""
        earlier = Entry(1, "deploy", "<previous release>", {}, "<its revision>", None)
        serving = Entry(2, "deploy", "<serving release>", {}, "<its revision>", 1)
        return cls(environment, (earlier, serving), dry_run=True)

    def dump(self) -> str:
        """The history as JSON lines, keeping the newest `KEPT` entries."""
        return "".join(f"{entry.to_json()}\n" for entry in self.entries[-KEPT:])

    def entry(self, number: int | None) -> Entry | None:
        """The entry of that number, if the history still keeps it."""
        return next((entry for entry in self.entries if entry.number == number), None)

    @property
    def serving(self) -> Entry | None:
        """The deploy whose release serves now; None before the first release."""
        if not self.entries:
            return None
        last = self.entries[-1]
        return self.entry(last.restores) if last.action == "rollback" else last

    def release(self, version: str) -> Entry | None:
        """The newest deploy of `version`."""
        deploys = [e for e in self.entries if e.action == "deploy" and e.version == version]
        return deploys[-1] if deploys else None

    def deployed(
        self,
        version: str,
        artifacts: Mapping[str, str],
        *,
        revision: str | None,
        commit: str | None,
        by: str,
        details: Mapping[str, str] | None = None,
    ) -> Entry:
        """The entry recording a deploy of `version`, which replaces the serving release."""
        previous = self.serving
        if previous is not None and previous.version == version:
            # Deploying the serving version again (a re-run) keeps what it replaced.
            previous = self.entry(previous.previous)
        return Entry(
            number=self._next_number(),
            action="deploy",
            version=version,
            artifacts=dict(artifacts),
            revision=revision,
            previous=previous.number if previous else None,
            commit=commit,
            time=now(),
            by=by,
            details=dict(details or {}),
        )

    def rolled_back(self, to: Entry, *, by: str) -> Entry:
        """The entry recording a rollback from the serving release to the release of `to`."""
        serving = self.serving
        return replace(
            to,
            number=self._next_number(),
            action="rollback",
            previous=serving.number if serving else None,
            restores=to.number,
            time=now(),
            by=by,
        )

    def with_entry(self, entry: Entry) -> History:
        """This history with `entry` appended."""
        return replace(self, entries=(*self.entries, entry))

    def rollback_target(self, version: str | None) -> Entry:
        """The deploy to go back to: VERSION's newest, or the one the serving release replaced."""
        serving = self.serving
        if version is not None:
            target = self.release(version)
            if target is None and self.dry_run:
                return Entry(0, "deploy", version, {}, "<its revision>", None)
            if target is None:
                known = ", ".join(dict.fromkeys(e.version for e in reversed(self.entries)))
                msg = f"{version} was never released to {self.environment}" + (
                    f"; its history knows {known}." if known else ", which has no release yet."
                )
                raise DeployError(msg)
            if serving is not None and serving.version == version:
                msg = f"{version} is what {self.environment} runs already."
                raise DeployError(msg)
            return target
        if serving is None:
            msg = f"{self.environment} has no release yet: there is nothing to roll back."
            raise DeployError(msg)
        target = self.entry(serving.previous)
        if target is None:
            before = "the first release" if serving.previous is None else "the oldest kept"
            msg = (
                f"{serving.version} is {before} of {self.environment}: there is no earlier "
                "release to roll back to."
            )
            raise DeployError(msg)
        return target

    def _next_number(self) -> int:
        return self.entries[-1].number + 1 if self.entries else 1


def in_order(found: Iterable[str]) -> tuple[str, ...]:
    """Components in the order a release switches them.

    The worker first, so that it understands every job the api queues; the services next, by
    name; the api last, once the services it calls run the release.
    """
    rank = {"worker": 0, "api": 2}
    return tuple(sorted(set(found), key=lambda component: (rank.get(component, 1), component)))


def now() -> str:
    """The current UTC time, as the history writes it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def schema_head(project: Path = PROJECT) -> str | None:
    """The head revision of the project's Alembic migrations, read without importing them."""
    revisions: dict[str, Sequence[str]] = {}
    for path in sorted(project.glob("src/*/migrations/versions/*.py")):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
        if isinstance(revision := values.get("revision"), str):
            down = values.get("down_revision")
            revisions[revision] = [down] if isinstance(down, str) else list(down or ())
    parents = {parent for downs in revisions.values() for parent in downs}
    heads = sorted(set(revisions) - parents)
    return ",".join(heads) or None


def checkout_commit(project: Path = PROJECT) -> str | None:
    """The commit of this checkout, if it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()
