"""The benchmark harness's own logic (`nox -s bench`): wrk scripts and their output, statistics,
goals, and the report and chart it writes."""

from __future__ import annotations

import http.server
import itertools
import json
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import BenchError
from bench.dataset import fingerprint
from bench.report import Bar, axis_ticks, bar_chart, markdown
from bench.stats import Figures, Goal, summarize
from bench.wrk import RESULT_PREFIX, Load, lua_script, parse, run

WRK_OUTPUT = f"""Running 5s test @ http://127.0.0.1:8000/health
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.46ms    1.02ms  20.12ms   90.00%
  35000 requests in 5.00s, 4.51MB read
Requests/sec:   7000.00
{RESULT_PREFIX}{{"requests": 35000, "duration_us": 5000000, "p50_us": 4460, "p99_us": 8230, \
"errors": {{"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0}}}}
"""


def test_wrk_result_line_is_parsed() -> None:
    result = parse(WRK_OUTPUT)
    assert result.rps == pytest.approx(7000)
    assert (result.p50_ms, result.p99_ms) == (pytest.approx(4.46), pytest.approx(8.23))
    assert result.errors == 3


def test_wrk_output_without_result_line_fails() -> None:
    with pytest.raises(BenchError, match="no result line"):
        parse(WRK_OUTPUT.split(RESULT_PREFIX)[0])


def test_lua_script_quotes_body_and_headers() -> None:
    body = json.dumps({"text": 'a "quoted" \\ word\n'})
    script = lua_script(Load("POST", "/search", body), {"X-API-Key": "k"}, threads=2)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert 'wrk.headers["X-API-Key"] = "k"' in script
    escaped = body.replace("\\", "\\\\").replace('"', '\\"')
    assert f'wrk.body = "{escaped}"' in script
    assert "function request()" not in script  # one path: wrk's own request


def test_lua_script_cycles_through_paths() -> None:
    script = lua_script(Load("GET", "/d/1", cycle=("/d/1", "/d/2")), {}, threads=2)
    assert 'local paths = {"/d/1", "/d/2"}' in script
    assert "math.floor(#paths / 2)" in script
    assert "function request()" in script


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[tuple[int, str]]]]:
    """An HTTP server on loopback that answers 200 and records (client port, path) asked."""
    paths: list[tuple[int, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            paths.append((self.client_address[1], self.path))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", paths
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_runs_the_script(
    recording_server: tuple[str, list[tuple[int, str]]], tmp_path: Path
) -> None:
    url, asked = recording_server
    cycle = tuple(f"/d/{n}" for n in range(8))
    load = Load("GET", cycle[0], cycle=cycle)
    script = tmp_path / "load.lua"
    script.write_text(lua_script(load, {}, threads=2))
    result = run(url, load, script, threads=2, connections=2, seconds=1)
    assert result.requests > 8
    assert result.requests <= len(asked)  # every completed request reached the server
    assert {path for _, path in asked} == set(cycle)
    # Each thread (here one connection each) goes round the paths in order, starting about
    # half-way from the other's start (wrk may take one request from a script before loading).
    by_connection: dict[int, list[int]] = {}
    for port, path in asked:
        by_connection.setdefault(port, []).append(cycle.index(path))
    assert len(by_connection) == 2
    for seen in by_connection.values():
        assert all(b == (a + 1) % len(cycle) for a, b in itertools.pairwise(seen))
    first, second = (seen[0] for seen in by_connection.values())
    assert abs(first - second) in {3, 4, 5}


def test_summary_of_an_even_count_takes_the_middle_pair() -> None:
    assert summarize([4, 1, 3, 2]) == {"min": 1, "median": 2.5, "max": 4}
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_a_figure_keeps_one_unit() -> None:
    figures = Figures()
    figures.add("render", 1.0, "s")
    with pytest.raises(ValueError, match="in s, not ms"):
        figures.add("render", 1000, "ms")


def figures_of(**values: list[float]) -> Figures:
    figures = Figures()
    for name, series in values.items():
        for value in series:
            figures.add(name, value, "x")
    return figures


def test_goal_compares_the_ratio_of_medians() -> None:
    figures = figures_of(new=[300, 100, 200], old=[100, 90, 110])
    met = Goal("faster", "new", ">=", 1.5, versus="old").evaluate(figures)
    assert (met["value"], met["met"], met["goal"]) == (2.0, True, ">= 1.5")
    missed = Goal("much faster", "new", ">=", 2.5, versus="old").evaluate(figures)
    assert missed["met"] is False


def test_strict_goal_fails_at_its_threshold_and_absent_figures_are_not_measured() -> None:
    figures = figures_of(layer=[1.0, 1.0, 1.0])
    assert Goal("small", "layer", "<", 1.0).evaluate(figures)["met"] is False
    assert Goal("small", "layer", "<=", 1.0).evaluate(figures)["met"] is True
    absent = Goal("other", "missing", "<", 1.0).evaluate(figures)
    assert (absent["value"], absent["met"]) == (None, None)


def test_search_answers_agree_to_six_decimals() -> None:
    a = [{"id": "x", "distance": 0.123456701}]
    b = [{"id": "x", "distance": 0.123456749}]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint([{"id": "y", "distance": 0.1234567}]) != fingerprint(a)


@pytest.mark.parametrize(
    ("top", "expected"), [(923, 1000), (7068, 8000), (1.0, 1.0), (0, 1.0), (4.57, 5)]
)
def test_chart_axis_reaches_the_largest_value(top: float, expected: float) -> None:
    ticks = axis_ticks(top)
    assert ticks[0] == 0
    assert ticks[-1] == pytest.approx(expected)
    assert len(ticks) <= 6


def test_chart_is_svg_with_a_bar_and_goal_per_endpoint() -> None:
    bars = [Bar("list <page>", 1.2, 1.1, 1.4, goal=1.5), Bar("/health", 2.2, 2.0, 2.5, goal=1.2)]
    svg = ET.fromstring(bar_chart("Slipway & baseline", "ratio", bars, reference=1.0))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    widths = [float(r.get("width", 0)) for r in svg.findall("svg:rect[@class='bar']", ns)]
    assert len(widths) == 2
    assert widths[1] / widths[0] == pytest.approx(2.2 / 1.2, rel=0.01)
    assert len(svg.findall("svg:line[@class='goal']", ns)) == 2
    assert "list <page>" in "".join(svg.itertext())


def test_report_marks_unmet_goals() -> None:
    results = {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu": "test", "cores": 2},
        "settings": {"rounds": 3, "load": "wrk", "reference": "stand-in"},
        "wall_seconds": 60.0,
        "figures": {"a": {"unit": "s", "min": 1.0, "median": 2.0, "max": 3.0, "values": []}},
        "goals": [
            {"name": "fast", "value": 0.5, "goal": "<= 1", "met": True},
            {"name": "small", "value": 2.0, "goal": "< 1", "met": False},
        ],
    }
    page = markdown(results, "chart.svg", ["how it was measured"])
    assert "| fast | 0.5 | <= 1 | met |" in page
    assert "| small | 2 | < 1 | **not met** |" in page
    assert "![" in page
    assert "(chart.svg)" in page
    assert "| `a` | s | 1 | 2 | 3 |" in page
