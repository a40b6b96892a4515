"""The running API against its own OpenAPI schema, fuzzed with Schemathesis.

Schemathesis generates requests from the schema, valid and invalid ones, for every operation,
and runs all of its checks on each answer: no 5xx, every status, header and body as documented,
invalid requests refused, documents readable after they are created and gone once deleted. The
seed is fixed so that a run can be repeated; change it to explore other requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import API_KEY

SEED = 1
EXAMPLES_PER_OPERATION = 50
# A body over MAX_BODY_BYTES is refused with 413 before it is read, valid or not: Schemathesis's
# defaults for these two checks, with 413. Each tick stream lasts up to a second: a few of them
# show what the others would.
CONFIGURATION = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 413, 429, "5xx"]

[[operations]]
include-path = "/events/ticks"
generation.max-examples = 5
"""


def test_the_api_keeps_to_its_schema(live_server: str, tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    configuration = tmp_path / "schemathesis.toml"
    configuration.write_text(CONFIGURATION)
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(  # noqa: S603 - Schemathesis's CLI from this environment
        [
            str(st),
            f"--config-file={configuration}",
            "run",
            f"{live_server}/openapi.json",
            "--checks=all",
            f"--header=X-API-Key: {API_KEY}",
            f"--seed={SEED}",
            f"--max-examples={EXAMPLES_PER_OPERATION}",
            "--workers=1",
            "--generation-database=none",
            "--report=json",
            f"--report-json-path={report}",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    summary = json.loads(report.read_text())
    figures = {
        "operations": summary["operations"],
        "test_cases": summary["test_cases"],
        "failures": summary["failures"],
    }
    print(json.dumps(figures))  # shown with `pytest -s` or -rA
    # Failing requests can be megabytes long: each output line is cut short here.
    output = "\n".join(line[:400] for line in result.stdout.splitlines())
    assert result.returncode == 0, output[-20_000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] > 0
    assert summary["test_cases"]["unique_failures"] == 0
