"""Slipway's benchmarks: `nox -s bench` runs bench/run.py, which writes bench/results.json and
docs/benchmarks.md (with docs/benchmarks.svg).

The pure parts (stats.py, wrk.py's parsing, report.py) import the standard library only, so that
the template's fast tests cover them.
"""


class BenchError(Exception):
    """A benchmark could not be measured; the message says what failed and what to do."""
