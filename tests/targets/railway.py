"""Files the railway target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The railway deploy files of `variant`."""
    return {"scripts/deploy/railway.py"}
