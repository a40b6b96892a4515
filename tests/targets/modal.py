"""Files the modal target adds."""

from __future__ import annotations

from ..matrix import Variant

PACKAGE = "src/my_service"


def files(variant: Variant) -> set[str]:
    """The modal deploy files of `variant`: the release scripts and the Modal app, with its test."""
    scripts = {"scripts/deploy/modal.py", "scripts/deploy/modal_releases.py"}
    return scripts | {f"{PACKAGE}/modal_app.py", "tests/test_modal_app.py"}
