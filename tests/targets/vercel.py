"""Files the vercel target adds: Vercel's entrypoint and configuration, and the release script."""

from __future__ import annotations

from ..matrix import Variant

PACKAGE = "src/my_service"
# The worker runs on Modal: the Modal app (and its test) that the modal target also uses.
WORKER = {f"{PACKAGE}/modal_app.py", "tests/test_modal_app.py"}


def files(variant: Variant) -> set[str]:
    """The vercel deploy files of `variant`."""
    files = {"index.py", "vercel.json", "scripts/deploy/vercel.py"}
    return files | WORKER if variant.features.worker else files
