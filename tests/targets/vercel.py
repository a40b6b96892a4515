"""Files the vercel target adds: Vercel's entrypoint and configuration, the release script and
the CLI pin."""

from __future__ import annotations

from ..matrix import Variant

PACKAGE = "src/my_service"
# The worker runs on Modal: the Modal app (and its test) and its releases, as the modal target's.
WORKER = {f"{PACKAGE}/modal_app.py", "tests/test_modal_app.py", "scripts/deploy/modal_releases.py"}


def files(variant: Variant) -> set[str]:
    """The vercel deploy files of `variant`."""
    files = {"index.py", "vercel.json", "package.json", "scripts/deploy/vercel.py"}
    return files | WORKER if variant.features.worker else files
