"""Files the k8s target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The k8s deploy files of `variant`."""
    return {"scripts/deploy/k8s.py"}
