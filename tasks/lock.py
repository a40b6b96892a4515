"""Copier task: write uv.lock so the first image build and CI can run `uv sync --locked`.

Runs in the generated project. Finds uv next to Copier (the `uv` package), then on PATH.
Without uv, or offline, it explains what to run instead and lets the copy succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def find_uv() -> str | None:
    """Return the uv executable: the one installed beside Copier, `$UV`, or the one on PATH."""
    try:
        from uv import find_uv_bin  # uv installed beside Copier
    except ImportError:
        pass
    else:
        return str(find_uv_bin())
    return os.environ.get("UV") or shutil.which("uv")


def main() -> int:
    """Lock the project's dependencies, or say how to do it."""
    uv = find_uv()
    if uv is None:
        print(
            "Slipway: uv is not installed, so uv.lock was not written. Install uv "
            "(https://docs.astral.sh/uv/) and run `uv lock` before building the image.",
            file=sys.stderr,
        )
        return 0
    result = subprocess.run([uv, "lock", "--quiet"], check=False)
    if result.returncode != 0:
        print(
            "Slipway: `uv lock` failed (see above), so uv.lock was not written. "
            "Run `uv lock` in the project once the package index is reachable.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
