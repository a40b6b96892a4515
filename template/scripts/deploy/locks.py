"""One release at a time per environment: the lock a deploy or rollback holds from start to end.

Two kinds, by what the platform offers:

- `HeldLock`: a process that takes an operating-system or database lock and holds it until its
  input closes (`flock` on the VM's host, a PostgreSQL advisory lock). If the release dies, even
  killed, the input closes and the lock goes with it.
- `Lease`: a record the platform stores (a Kubernetes Lease, a file on a Modal volume, a Railway
  variable), renewed while the release runs. A release that died leaves a lease that expires, or
  that this machine can take over at once when the process that held it is gone.

Either way a second release stops before it changes anything, naming the one that holds the lock.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from . import DeployError, Release

LEASE_SECONDS = 120  # a lease nobody renewed for this long belongs to a release that died
RENEW_SECONDS = 30


def holder() -> str:
    """Who is releasing, as the lock names them to anyone else who tries."""
    if run := os.environ.get("GITHUB_RUN_ID"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        repository = os.environ.get("GITHUB_REPOSITORY", "")
        actor = os.environ.get("GITHUB_ACTOR", "GitHub Actions")
        return f"{actor} in {server}/{repository}/actions/runs/{run}"
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"


class ReleaseInProgressError(DeployError):
    """Another release of the environment is under way."""


def refusal(environment: str, held_by: str) -> ReleaseInProgressError:
    """The error of a release that finds another one under way."""
    return ReleaseInProgressError(
        f"{environment} is being released by {held_by}. One release at a time: wait until it "
        "has finished, then run this again."
    )


@dataclass(frozen=True)
class HeldLock:
    """A lock held by a helper process: `command` prints "acquired", or "busy <holder>" and exits.

    The helper then holds the lock until its standard input closes.
    """

    release: Release
    command: tuple[str, ...]
    what: str  # where the lock lives, for the narration
    failure: str = ""  # the error when the helper cannot take the lock at all

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock while the block runs."""
        self.release.say(f"one release at a time: {self.what}")
        print(f"    $ {self.release.mask(shlex.join(self.command))}", flush=True)
        if self.release.dry_run:
            yield
            return
        helper = subprocess.Popen(  # noqa: S603 - the release's own command, printed above
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert helper.stdout is not None  # noqa: S101 - Popen(stdout=PIPE) always has it
        answer = helper.stdout.readline().strip()
        if answer != "acquired":
            helper.communicate("")
            if answer.startswith("busy"):
                raise refusal(self.release.environment, answer[4:].strip() or "another release")
            msg = self.failure or f"could not take the release lock ({self.what}): see above."
            raise DeployError(msg)
        try:
            yield
        finally:
            helper.communicate("")  # closing its input releases the lock


@dataclass(frozen=True)
class Holder:
    """What a lease records: who holds it, for what, and until when unless renewed."""

    holder: str
    host: str
    pid: int
    action: str
    version: str
    since: str
    expires: str

    def describe(self) -> str:
        """The holder, as a refusal names it."""
        return f"{self.holder}, {self.action} of {self.version} since {self.since}"

    def expired(self) -> bool:
        """Nobody renewed it in time: its release died."""
        return datetime.fromisoformat(self.expires) < datetime.now(UTC)

    def held_here(self) -> bool:
        """It is this process's."""
        return (self.host, self.pid) == (socket.gethostname(), os.getpid())

    def abandoned(self) -> bool:
        """It was held by a process of this machine that no longer runs."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def to_json(self) -> str:
        """The record, as the store keeps it."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The record a store returned; None if it is not one (then it is not honoured)."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


class LeaseStore(Protocol):
    """Where a platform keeps the lease; each method runs the platform's CLI or API."""

    what: str

    def create(self, record: str) -> bool:
        """Store the record unless one exists; whether it was stored."""

    def read(self) -> tuple[str, str] | None:
        """The stored record and a token for `replace`; None if there is none."""

    def replace(self, record: str, token: str) -> bool:
        """Overwrite the record read with `token`; False if it changed since (when detectable)."""

    def delete(self) -> None:
        """Remove the record."""


@dataclass
class Lease:
    """A lease in a `LeaseStore`, renewed in the background while the release runs."""

    release: Release
    store: LeaseStore
    action: str
    version: str
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Take the lease, or stop naming its holder; renew it while the block runs."""
        self.release.say(
            f"one release at a time: {self.store.what}, renewed every {RENEW_SECONDS}s "
            f"(another release takes it over {LEASE_SECONDS}s after the last renewal)"
        )
        self._take()
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop,), daemon=True)
        if not self.release.dry_run:
            renewer.start()
        try:
            yield
        finally:
            stop.set()
            if renewer.is_alive():
                renewer.join()
            self.store.delete()

    def _record(self) -> str:
        expires = datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)
        return Holder(
            holder=holder(),
            host=socket.gethostname(),
            pid=os.getpid(),
            action=self.action,
            version=self.version,
            since=self.since,
            expires=expires.isoformat(timespec="seconds"),
        ).to_json()

    def _take(self) -> None:
        if self.store.create(self._record()) or self.release.dry_run:
            return
        found = self.store.read()
        if found is None:  # released between the two calls
            if self.store.create(self._record()):
                return
            found = self.store.read()
        if found is not None:
            text, token = found
            current = Holder.from_json(text)
            if current is not None and not (current.expired() or current.abandoned()):
                raise refusal(self.release.environment, current.describe())
            gone = "whose release died" if current else "that is not a lease"
            self.release.say(f"taking over a lease {gone}: {text}")
            if self.store.replace(self._record(), token):
                return
        msg = f"another release took the lock ({self.store.what}) at the same moment: run again."
        raise DeployError(msg)

    def _renew(self, stop: threading.Event) -> None:
        self.release.quietly()
        while not stop.wait(RENEW_SECONDS):
            found = self.store.read()
            current = Holder.from_json(found[0]) if found else None
            if found is None or current is None or not current.held_here():
                # Another release took the lease over: this one must not take it back.
                print(f"    the release lock ({self.store.what}) is no longer this release's")
                return
            self.store.replace(self._record(), found[1])
