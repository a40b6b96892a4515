"""Files the vm target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The vm deploy files of `variant`."""
    return {"scripts/deploy/vm.py"}
