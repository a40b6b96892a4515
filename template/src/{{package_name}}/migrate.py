"""The `migrate` command: bring the database to this release's schema.

Every deploy runs it before the new code serves, on every platform. It is `alembic upgrade head`,
except for a database that a newer release has already migrated: by the expand/contract rule
(README.md, "Changing the schema") this release's code runs on that schema, so it is left as it
is. That is what rolling back across a migration needs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from .config import Settings

logger = logging.getLogger(__name__)


def alembic_config(settings: Settings) -> Config:
    """Alembic's configuration for the database of `settings`, from any working directory."""
    config = Config()
    config.set_main_option("script_location", f"{__package__}:migrations")
    config.attributes["settings"] = settings
    return config


def migrate(settings: Settings) -> None:
    """Upgrade to this release's head, or keep a newer schema; log which."""
    config = alembic_config(settings)
    config.attributes["keep_newer_schema"] = True
    head = ", ".join(ScriptDirectory.from_config(config).get_heads())
    command.upgrade(config, "head")
    if newer := config.attributes.get("newer_schema"):
        logger.info(
            "the database is at revision %s, which a newer release migrated to; this release "
            "(head %s) runs on that schema, so it stays as it is",
            ", ".join(newer),
            head,
            extra={"revision": newer, "head": head},
        )
    else:
        logger.info("the database is at this release's revision %s", head, extra={"head": head})
