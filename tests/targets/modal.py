"""Files the modal target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The modal deploy files of `variant`."""
    return {"scripts/deploy/modal.py"}
