"""Files the vercel target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The vercel deploy files of `variant`."""
    return {"scripts/deploy/vercel.py"}
