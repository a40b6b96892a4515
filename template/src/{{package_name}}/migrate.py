"""The `migrate` command: bring the database to this release's schema.

The database holds one Alembic history per owner: the API's (`migrations/`, version table
`alembic_version`) and one for each service that owns tables (`services/NAME/migrations/`,
`alembic_version_NAME`). Every deploy runs `migrate` before the new code serves, on every
platform: each history is upgraded to its head, except one that a newer release has already
migrated: by the expand/contract rule (README.md, "Changing the schema") this release's code runs
on that schema, so it is left as it is. That is what rolling back across a migration needs.

Every run holds a PostgreSQL advisory lock, so that two migrators (two deploys, or a deploy and a
person) never interleave: the second waits, then finds nothing left to do. Each statement's wait
for a table lock is bounded, because DDL queued behind a long transaction blocks every query that
arrives after it; such a migration fails fast and can simply be run again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from alembic import command, context
from alembic.config import CommandLine, Config
from alembic.script import ScriptDirectory

from . import services

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection

    from .config import DatabaseSettings

logger = logging.getLogger(__name__)

# How long a migrator waits for another one to finish.
WAIT_FOR_OTHER_MIGRATOR = "10min"
# How long one statement may wait for a lock, and run; the transaction is undone past either.
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "15min"


@dataclass(frozen=True)
class History:
    """One owner's migrations: the API's, or a service's."""

    owner: str  # "api", or the service's name
    package: str  # the package whose `migrations` subpackage holds it (and `models`, its tables)

    @property
    def version_table(self) -> str:
        """Where the database records this history's revision."""
        return version_table(self.owner)


def version_table(owner: str) -> str:
    """The table of `owner`'s revision: Alembic's default for the API's, suffixed for others."""
    return "alembic_version" if owner == "api" else f"alembic_version_{owner.replace('-', '_')}"


def histories() -> list[History]:
    """The API's history, then each service's that owns tables (has a `migrations` package)."""
    found = [History("api", __package__)]
    for name in services.names():
        package = services.package(name)
        if find_spec(f"{package}.migrations") is not None:
            found.append(History(name, package))
    return found


def history(owner: str) -> History:
    """The history of `owner` ("api" or a service that owns tables)."""
    known = {found.owner: found for found in histories()}
    if owner not in known:
        msg = f"no migrations of {owner!r}: the histories here are {', '.join(known)}"
        raise SystemExit(msg)
    return known[owner]


def owner_of(table: str) -> str | None:
    """Whose history a table of the database belongs to: a service's tables start with its name
    (`memory_items`), the API owns the others, and the version tables are Alembic's own."""
    if table.startswith("alembic_version"):
        return None
    for found in histories()[1:]:
        if table.startswith(f"{found.owner.replace('-', '_')}_"):
            return found.owner
    return "api"


def alembic_config(settings: DatabaseSettings, owner: History | None = None) -> Config:
    """Alembic's configuration of one history (the API's by default), from any directory."""
    owner = owner or histories()[0]
    config = Config()
    config.set_main_option("script_location", f"{owner.package}:migrations")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["settings"] = settings
    return config


def migrate(settings: DatabaseSettings) -> None:
    """Upgrade every history to this release's head, or keep a newer schema; log which."""
    for owner in histories():
        config = alembic_config(settings, owner)
        config.attributes["keep_newer_schema"] = True
        head = ", ".join(ScriptDirectory.from_config(config).get_heads())
        command.upgrade(config, "head")
        extra = {"owner": owner.owner, "head": head}
        if newer := config.attributes.get("newer_schema"):
            logger.info(
                "%s: the database is at revision %s, which a newer release migrated to; this "
                "release (head %s) runs on that schema, so it stays as it is",
                owner.owner,
                ", ".join(newer),
                head,
                extra={**extra, "revision": newer},
            )
        else:
            message = "%s: the database is at this release's revision %s"
            logger.info(message, owner.owner, head, extra=extra)


def _bound_locks() -> None:
    """Serialise migrators, then bound lock waits and statements, for this transaction only."""
    context.execute(f"SET LOCAL lock_timeout = '{WAIT_FOR_OTHER_MIGRATOR}'")
    context.execute(f"SELECT pg_advisory_xact_lock(hashtext('{__package__}.migrations'))")
    context.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    context.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")


def _unknown_revisions() -> list[str]:
    """Revisions the database is at that these migrations do not know: a newer release's."""
    script = ScriptDirectory.from_config(context.config)
    known = {revision.revision for revision in script.walk_revisions()}
    current = context.get_context().get_current_heads()
    return [revision for revision in current if revision not in known]


def run_environment(metadata: MetaData, owner: str = "api") -> None:
    """The body of each history's env.py: run `owner`'s migrations with the API's Settings."""
    from .config import get_settings
    from .db import connect_options, create_engine
    from .logs import configure_logging

    config = context.config
    # Tests and tools may hand over their own Settings; the CLI reads the environment.
    settings: DatabaseSettings = config.attributes.get("settings") or get_settings()
    if config.cmd_opts is not None:  # the `alembic` command, not a program calling Alembic
        configure_logging(settings.log_level, settings.log_format)
    options: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table": version_table(owner),
        # Autogenerate compares `owner`'s tables only: the others belong to other histories.
        "include_name": lambda name, kind, _: kind != "table" or owner_of(name) == owner,
    }

    if context.is_offline_mode():  # `alembic upgrade head --sql`: SQL to stdout
        url = connect_options(settings.database_url).url
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            _bound_locks()
            context.run_migrations()
        return

    def run(connection: Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            _bound_locks()
            # `migrate` asks to leave a newer schema alone (see above).
            if config.attributes.get("keep_newer_schema") and (newer := _unknown_revisions()):
                config.attributes["newer_schema"] = newer
                return
            context.run_migrations()

    async def connect() -> None:
        engine = create_engine(settings, pooled=False)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(connect())


def main(argv: Sequence[str]) -> int:
    """`alembic ARGS` on the API's history, or `--service NAME ARGS` on a service's; `--sql`
    prints the SQL of every history's upgrade, as `migrate` would run them (for linting)."""
    from .config import get_settings

    if list(argv) == ["--sql"]:
        for found in histories():
            command.upgrade(alembic_config(get_settings(), found), "head", sql=True)
        return 0
    owner = "api"
    if argv[:1] == ["--service"] and len(argv) > 1:
        owner, argv = argv[1], argv[2:]
    found = history(owner)
    cli = CommandLine(prog=f"alembic ({found.owner})")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = alembic_config(get_settings(), found)
    config.cmd_opts = options  # as the `alembic` command's own: it configures logging
    cli.run_cmd(config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
