"""The engine behind `nox -s deploy` and `nox -s rollback`: it narrates and runs release steps.

Standard library only, so that a release needs nothing but nox and the platform's own CLI. Every
command and HTTP request goes through `Release`, which prints it first and, in a dry run, prints
it only: a dry run changes nothing and needs no credentials.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENVIRONMENTS = ("staging", "production")
SCHEMA_WARNING = (
    "A rollback changes the code that runs, not the database: migrations that ran are not "
    'reverted, and the earlier release runs on the newer schema (README.md, "Changing the '
    'schema"). To revert a migration, run `nox -s migrate -- downgrade <revision>` against this '
    "environment's database (`nox -s migrate -- history` lists the revisions)."
)


class DeployError(Exception):
    """The release cannot go on; the message says what is wrong and what to do."""


@dataclass
class Release:
    """One deploy or rollback of one environment, narrated step by step."""

    environment: str
    dry_run: bool = False
    _step: int = 0
    _secrets: list[str] = field(default_factory=list)
    # Set in a thread whose commands are housekeeping (renewing a lease), not steps to narrate.
    _quiet: threading.local = field(default_factory=threading.local)

    def quietly(self) -> None:
        """Stop printing the commands this thread runs."""
        self._quiet.on = True

    def _print(self, line: str) -> None:
        if not getattr(self._quiet, "on", False):
            print(line, flush=True)

    def step(self, title: str) -> None:
        """Announce the next step."""
        self._step += 1
        print(f"\n[{self._step}] {title}", flush=True)

    def say(self, message: str) -> None:
        """Explain something about the current step."""
        self._print(f"    {message}")

    def require(self, *, tools: tuple[str, ...] = (), variables: tuple[str, ...] = ()) -> None:
        """Stop before anything changes if a CLI or a variable is missing (a dry run lists them)."""
        if self.dry_run:
            needs = [f"`{tool}` on PATH" for tool in tools] + [f"{name} set" for name in variables]
            if needs:
                self.say(f"needs: {', '.join(needs)}")
            return
        for tool in tools:
            if shutil.which(tool) is None:
                msg = f"`{tool}` is not installed or not on PATH; install it and run again."
                raise DeployError(msg)
        for name in variables:
            if not os.environ.get(name):
                msg = (
                    f"{name} is not set: export it, or add it to the GitHub environment "
                    f'"{self.environment}" (see "Deploying" in README.md).'
                )
                raise DeployError(msg)

    def variable(self, name: str, default: str | None = None, *, secret: bool = False) -> str:
        """An environment variable the release uses (a dry run shows a missing one as $NAME)."""
        value = os.environ.get(name) or default
        if value is None:
            if self.dry_run:
                return f"${name}"
            msg = f"{name} is not set: export it, or add it to the GitHub environment."
            raise DeployError(msg)
        if secret:
            self._secrets.append(value)
        return value

    def mask(self, text: str) -> str:
        """`text` with every secret value replaced by ***."""
        for value in self._secrets:
            text = text.replace(value, "***")
        return text

    def run(
        self,
        *command: str,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        stdin: str | None = None,
        check: bool = True,
    ) -> str:
        """Print a command, then run it (not in a dry run); a failure stops the release."""
        self._print(f"    $ {self.mask(shlex.join(command))}")
        if self.dry_run:
            return ""
        result = subprocess.run(  # noqa: S603 - commands are the release's own, printed above
            command,
            env={**os.environ, **env} if env else None,
            input=stdin,
            stdout=subprocess.PIPE if capture else None,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            msg = f"`{shlex.join(command[:2])}` failed with exit code {result.returncode}."
            raise DeployError(self.mask(msg))
        return result.stdout or ""

    def call(
        self, *command: str, stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Print a command, then run it capturing its output, whatever its exit code.

        A dry run runs nothing and answers as if the command succeeded with no output.
        """
        self._print(f"    $ {self.mask(shlex.join(command))}")
        if self.dry_run:
            return subprocess.CompletedProcess(command, 0, "", "")
        return subprocess.run(  # noqa: S603 - commands are the release's own, printed above
            command,
            env={**os.environ, **env} if env else None,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Print an HTTP request with a JSON body, then send it (not in a dry run)."""
        self._print(f"    {method} {url}")
        if body is not None:
            for line in self.mask(json.dumps(body, indent=2)).splitlines():
                # A long value (a whole release history) is shown by its start.
                shown = line if len(line) <= 1000 else f"{line[:200]}… ({len(line)} characters)"
                self._print(f"      {shown}")
        if self.dry_run:
            return None
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the platform's API
            url,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as exc:
            msg = f"{method} {url} answered {exc.code}: {exc.read().decode(errors='replace')[:500]}"
            raise DeployError(self.mask(msg)) from None
        except urllib.error.URLError as exc:
            msg = f"{method} {url} failed: {exc.reason}"
            raise DeployError(msg) from None

    def wait(
        self, what: str, ready: Callable[[], bool], *, timeout: float, interval: float = 2
    ) -> None:
        """Poll `ready` until it is true, or stop the release after `timeout` seconds."""
        self.say(f"waiting up to {timeout:.0f}s for {what}")
        if self.dry_run:
            return
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                msg = f"{what} did not happen within {timeout:.0f}s."
                raise DeployError(msg)
            time.sleep(interval)
