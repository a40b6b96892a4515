"""Extra HTTP services beside the API: a subpackage each, found here so that no file lists them.

A service is a FastAPI app of this distribution, served from the API's image by `serve NAME`.
Its subpackage holds `config.py` (its Settings), `app.py` (its `create_app`) and `routes.py`;
the rest of the HTTP contract is the API's own (web.py builds both). This module imports no
service: the command line lists them without loading them.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..config import ServiceSettings


def names() -> list[str]:
    """The services here, as `serve` names them: their subpackage's name, `-` for `_`."""
    found = (module.name for module in pkgutil.iter_modules(__path__) if module.ispkg)
    return sorted(name.replace("_", "-") for name in found)


def package(name: str) -> str:
    """The import path of service `name`'s subpackage."""
    return f"{__name__}.{name.replace('-', '_')}"


def settings_class(name: str) -> type[ServiceSettings]:
    """Service `name`'s Settings class."""
    return cast("type[ServiceSettings]", import_module(f"{package(name)}.config").Settings)


def get_settings(name: str) -> ServiceSettings:
    """Service `name`'s settings, read once per process."""
    return cast("ServiceSettings", import_module(f"{package(name)}.config").get_settings())
