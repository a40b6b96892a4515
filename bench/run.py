"""`nox -s bench`: every benchmark, interleaved round by round, then bench/results.json and
docs/benchmarks.md (with docs/benchmarks.svg).

    python -m bench.run [COOKIE] [--rounds N] [--seconds S]

COOKIE is a path or URL of a scientific-python/cookie checkout, cloned to a temporary directory
and used as the reference template; without it, the bench renders a cookie-shaped stand-in.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import BenchError
from .coldstart import ColdStartBench
from .context import Run
from .dataset import Endpoint
from .deploy import DeployBench
from .image import ImageBench
from .lab import lab
from .project import ROOT
from .render import RenderBench
from .report import Bar, bar_chart, markdown, write_json
from .service import APPS, CONNECTIONS, THREADS, ServiceBench
from .stats import Figures, Goal

RESULTS = ROOT / "bench" / "results.json"
DOCS = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.svg"


class Section(Protocol):
    """A part of the bench: prepared once, then measured once per round."""

    method: list[str]

    def setup(self) -> None: ...

    def round(self) -> None: ...


def goals(endpoints: Sequence[Endpoint]) -> list[Goal]:
    """What the figures are held to, each comparing medians of the same run."""
    service = [
        Goal(
            f"`{e.name}` req/s vs the naive baseline",
            f"service.slipway.{e.name}.rps",
            ">=",
            e.versus_baseline,
            versus=f"service.baseline.{e.name}.rps",
        )
        for e in endpoints
    ]
    return [
        Goal(
            "render per file (CLI, --skip-tasks) vs the reference's",
            "render.slipway.skip_tasks.per_file",
            "<=",
            1.1,
            versus="render.reference.per_file",
        ),
        Goal(
            "list with filled embeddings vs list without (req/s)",
            "service.slipway.list_with.rps",
            ">=",
            0.9,
            versus="service.slipway.list_without.rps",
        ),
        *service,
        Goal(
            "cache hit vs cache miss (req/s)",
            "service.slipway.get_hit.rps",
            ">=",
            1.5,
            versus="service.slipway.get_miss.rps",
        ),
        Goal(
            "rebuild after a code change vs cold build",
            "image.rebuild",
            "<=",
            0.15,
            versus="image.cold_build",
        ),
        Goal("layer a one-line code change produces (MB)", "image.code_change_layer", "<", 1.0),
        Goal("container start to first /health 200 (s)", "cold_start.container", "<=", 1.0),
    ]


def machine(docker: str) -> dict[str, Any]:
    """What the numbers were measured on (`docker`: the engine's version)."""
    cpu = platform.processor() or "unknown"
    memory = 0.0
    with suppress(OSError):  # /proc is Linux's
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024**2
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": f"{memory:.0f} GB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker": docker,
        "wrk": wrk.stdout.split(" Copyright")[0].strip(),
    }


def chart(figures: Figures, endpoints: Sequence[Endpoint]) -> str:
    """Slipway's req/s over the baseline's, per endpoint, against each endpoint's goal."""

    def bar(endpoint: Endpoint) -> Bar:
        slipway, baseline = (f"service.{app}.{endpoint.name}.rps" for app in APPS)
        # Rounds are interleaved: each round's pair was measured side by side.
        per_round = [
            a / b for a, b in zip(figures.values[slipway], figures.values[baseline], strict=True)
        ]
        median = figures.median(slipway) / figures.median(baseline)
        return Bar(endpoint.label, median, min(per_round), max(per_round), endpoint.versus_baseline)

    bars = [bar(endpoint) for endpoint in endpoints]
    axis = "Slipway req/s / naive baseline req/s"
    return bar_chart("Slipway against the naive baseline", axis, bars, reference=1.0)


def interleave(run: Run, sections: Sequence[Section]) -> None:
    """Set every section up, then measure each once per round, one after the other."""
    for section in sections:
        section.setup()
    for number in range(1, run.rounds + 1):
        run.round = number
        for section in sections:
            section.round()
    run.round = 0
    run.say("done")


@dataclass(frozen=True)
class Outcome:
    """What a run measured: results.json's content, and what the chart is drawn from."""

    results: dict[str, Any]
    figures: Figures
    endpoints: list[Endpoint]


def measure(args: argparse.Namespace) -> Outcome:
    """Set every section up, run the rounds, and gather the results."""
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch,
        lab() as docker,
        ExitStack() as processes,
    ):
        run = Run(Path(scratch), args.rounds)
        render = RenderBench(run, args.cookie)
        service = ServiceBench(run, docker, processes, args.seconds)
        image = ImageBench(run, docker, service)
        sections: list[Section] = [
            render,
            service,
            image,
            ColdStartBench(run, docker, service, image),
            DeployBench(run),
        ]
        try:
            interleave(run, sections)
        except BaseException:
            run.print_logs()  # they go with the scratch directory
            raise
        context = machine(docker.client.version()["Version"])
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": context,
        "settings": {
            "rounds": args.rounds,
            "load": f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds:g}s on 127.0.0.1",
            "reference": render.reference,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
        "figures": run.figures.as_dict(),
        "goals": [goal.evaluate(run.figures) for goal in goals(service.endpoints)],
        "method": [item for section in sections for item in section.method],
    }
    return Outcome(results, run.figures, service.endpoints)


def write(outcome: Outcome) -> None:
    """results.json, the chart and the page."""
    write_json(RESULTS, outcome.results)
    CHART.write_text(chart(outcome.figures, outcome.endpoints))
    DOCS.write_text(markdown(outcome.results, CHART.name, outcome.results["method"]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="nox -s bench --",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "cookie", nargs="?", help="path or URL of a scientific-python/cookie checkout"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (>= 3)")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of each wrk run")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: each figure reports min, median and max")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; a failure prints one paragraph and exits 1, after cleaning up."""
    args = parse_args(argv)
    # nox and CI stop a run with SIGTERM: unwind, so that containers and processes are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        outcome = measure(args)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    write(outcome)
    for goal in outcome.results["goals"]:
        state = {True: "met", False: "NOT MET", None: "not measured"}[goal["met"]]
        print(f"{state:>12}  {goal['name']}: {goal['value']} ({goal['goal']})")
    written = ", ".join(str(path.relative_to(ROOT)) for path in (RESULTS, DOCS, CHART))
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
