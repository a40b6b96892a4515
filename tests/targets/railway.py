"""Files the railway target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The railway files of `variant`: config as code per service, and the CLI's npm pin."""
    configs = (
        {"railway.json", "railway.worker.json"} if variant.features.worker else {"railway.json"}
    )
    return {"scripts/deploy/railway.py", "package.json", "package-lock.json", *configs}
