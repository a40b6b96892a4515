"""HTTP load with wrk: a Lua script per load, and the one JSON line its `done` callback prints."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import BenchError

RESULT_PREFIX = "wrk-result "
# wrk counts a response of status 400 or more as an error; a run with more than this share of
# errors measured failures, not the service.
MAX_ERROR_SHARE = 0.01

# What the script's `done` callback prints, after RESULT_PREFIX: a string.format pattern.
RESULT_FORMAT = (
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}'
)
DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(%s,
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

# Each thread walks the paths from its own start, so that threads do not follow each other
# through the same ids (the second would find what the first just cached).
CYCLE = """
local paths = {%s}
local started = 0
function setup(thread)
  thread:set("first", started * math.floor(#paths / %d))
  started = started + 1
end
local at
function request()
  at = ((at or first) %% #paths) + 1
  return wrk.format(nil, paths[at])
end
"""


@dataclass(frozen=True)
class Load:
    """What every request of a run sends: a method, a path (or paths to cycle through), a body."""

    method: str
    path: str
    body: str | None = None
    cycle: tuple[str, ...] = ()  # paths requested in turn instead of `path`


@dataclass(frozen=True)
class Result:
    """One wrk run: requests completed, how long it ran, latency percentiles and errors."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def lua_quote(text: str) -> str:
    """`text` as a Lua string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def lua_script(load: Load, headers: dict[str, str], threads: int) -> str:
    """The wrk script that sends `load` with `headers` and prints the result as JSON."""
    lines = [f"wrk.method = {lua_quote(load.method)}"]
    if load.body is not None:
        lines.append(f"wrk.body = {lua_quote(load.body)}")
        headers = {"Content-Type": "application/json", **headers}
    lines += [f"wrk.headers[{lua_quote(k)}] = {lua_quote(v)}" for k, v in headers.items()]
    script = "\n".join(lines) + "\n"
    if load.cycle:
        script += CYCLE % (", ".join(map(lua_quote, load.cycle)), threads)
    return script + DONE % lua_quote(f"{RESULT_PREFIX}{RESULT_FORMAT}\n")


def parse(stdout: str) -> Result:
    """The result line of a wrk run's output."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line.removeprefix(RESULT_PREFIX))
            return Result(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1e3,
                p99_ms=data["p99_us"] / 1e3,
                errors=sum(data["errors"].values()),
            )
    msg = f"wrk printed no result line (its script's `done` did not run):\n{stdout}"
    raise BenchError(msg)


def run(
    base_url: str, load: Load, script: Path, *, threads: int, connections: int, seconds: float
) -> Result:
    """Load `base_url` + the load's path for `seconds`; fail when errors are over the share."""
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds:g}s",
        "--timeout=5s",
        f"--script={script}",
        base_url + load.path,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired:
        msg = f"wrk did not finish within {seconds + 30:g}s: {' '.join(command)}"
        raise BenchError(msg) from None
    if done.returncode != 0:
        msg = f"wrk failed ({done.returncode}): {done.stderr or done.stdout}"
        raise BenchError(msg)
    result = parse(done.stdout)
    if result.requests == 0 or result.errors > MAX_ERROR_SHARE * result.requests:
        msg = (
            f"{load.method} {base_url}{load.path}: {result.errors} errors in {result.requests} "
            "requests (socket errors, timeouts or status >= 400): see the server's log"
        )
        raise BenchError(msg)
    return result
