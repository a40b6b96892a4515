"""Rendering for the template's tests: each variant is rendered once per run, with pytest-copie."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_copie.plugin import Copie

from .matrix import Variant

Render = Callable[[Variant], Path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With xdist's --dist loadgroup, run a variant's tests on one worker, which renders it once."""
    for item in items:
        params = getattr(item, "callspec", None)
        variant = params.params.get("variant") if params else None
        if isinstance(variant, Variant):
            item.add_marker(pytest.mark.xdist_group(variant.id))


@pytest.fixture(scope="session")
def render(copie_session: Copie) -> Render:
    """Render a variant (once per run) and return the project directory."""
    rendered: dict[Variant, Path] = {}

    def render(variant: Variant) -> Path:
        if variant not in rendered:
            result = copie_session.copy(extra_answers=variant.answers)
            if result.exception is not None:
                raise result.exception
            assert result.project_dir is not None
            rendered[variant] = result.project_dir
        return rendered[variant]

    return render
