"""Files the railway target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The railway deploy files of `variant`: one config-as-code file per Railway service."""
    configs = (
        {"railway.json", "railway.worker.json"} if variant.features.worker else {"railway.json"}
    )
    return {"scripts/deploy/railway.py", *configs}
