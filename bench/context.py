"""What every part of a benchmark run shares: the figures, a scratch directory, progress lines,
and commands and processes that fail with their output instead of hanging or passing silently."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import BenchError
from .stats import Figures

# The environment of the processes under test: nothing from the caller's shell that could switch
# on tracing, a .env, or another database.
BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/root"),
    "LANG": "C.UTF-8",
}


@dataclass
class Run:
    """One benchmark run: its figures, its scratch directory, and where it is."""

    work: Path
    rounds: int
    figures: Figures = field(default_factory=Figures)
    round: int = 0  # 0 while setting up
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        """A progress line, with the time since the run started."""
        where = f"round {self.round}/{self.rounds}" if self.round else "setup"
        print(f"[{time.perf_counter() - self.started:4.0f}s {where}] {text}", flush=True)

    def record(self, name: str, value: float, unit: str, detail: str = "") -> None:
        """Record this round's value of a figure and print it."""
        self.figures.add(name, value, unit)
        self.say(f"{name} = {value:.4g} {unit}{detail}")

    def print_logs(self, lines: int = 30) -> None:
        """The end of every process log, for a run that failed."""
        for log in sorted(self.work.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"----- {log.name} -----", *tail, sep="\n", file=sys.stderr)

    def path(self, *parts: str) -> Path:
        """A path in the scratch directory."""
        return self.work.joinpath(*parts)


def check_output(
    command: Sequence[str | Path],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command to completion: its output, or a BenchError with the output's end."""
    words = [str(word) for word in command]
    try:
        done = subprocess.run(
            words,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        msg = f"`{' '.join(words)}` did not finish within {timeout:g}s"
        raise BenchError(msg) from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        msg = f"`{' '.join(words)}` exited {done.returncode}:\n{output}"
        raise BenchError(msg)
    return done.stdout


@dataclass
class Process:
    """A background process the run started, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def failed(self) -> str | None:
        """Why the process cannot serve (it exited, with its log's end), or None."""
        if self.popen.poll() is None:
            return None
        return f"{self.name} exited {self.popen.returncode}:\n{self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def start(
    name: str, command: Sequence[str | Path], *, env: dict[str, str], cwd: Path, log: Path
) -> Process:
    """Start a background process with its output in `log`."""
    with log.open("wb") as output:
        popen = subprocess.Popen(
            [str(word) for word in command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Process(name, popen, log)
