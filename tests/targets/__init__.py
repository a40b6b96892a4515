"""What each deploy target adds to a project: one module per target, each with `files(variant)`."""

from __future__ import annotations

import importlib

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The files `variant`'s deploy target adds to the project."""
    module = importlib.import_module(f"{__name__}.{variant.deploy_target}")
    return set(module.files(variant))
