"""Files the railway target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The railway files of `variant`: config as code per service, and the CLI's npm pin."""
    names = [*variant.services, *(["worker"] if variant.features.worker else [])]
    configs = {"railway.json", *(f"railway.{name}.json" for name in names)}
    return {"scripts/deploy/railway.py", "package.json", "package-lock.json", *configs}
