"""Database engine, sessions and the declarative base (engines are made in the lifespan).

DATABASE_URL comes in the forms platforms hand out, with libpq's query parameters; asyncpg takes
some of them under other names and refuses the rest. `connect_options` translates what it can
and leaves the rest out with one warning, so that no URL a platform gives stops the service.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from sqlalchemy import MetaData, NullPool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from .pool import FairPool

if TYPE_CHECKING:
    from .config import DatabaseSettings

logger = logging.getLogger(__name__)

# A database that does not answer within this many seconds is unavailable (503, not a hang);
# `?connect_timeout=` in DATABASE_URL overrides it.
CONNECT_TIMEOUT_SECONDS = 5
# How long a request waits for a free pooled connection before it is answered 503.
POOL_TIMEOUT_SECONDS = 10
# Pooled connections are replaced after this many seconds, before the idle timeouts of the load
# balancers, NATs and poolers between here and the database cut them silently. No ping precedes
# each checkout (a round trip per request): a connection that died anyway fails its statement,
# and SQLAlchemy then invalidates the whole pool, so one request learns of a database restart —
# a read runs once more (api/routing.py), a write is answered 503 with Retry-After (errors.py).
POOL_RECYCLE_SECONDS = 240

Pooler = Literal["none", "session", "transaction"]

# DATABASE_URL parameters asyncpg takes as keyword arguments: URL name -> (keyword, type).
_KEYWORDS: dict[str, tuple[str, type]] = {
    "user": ("user", str),
    "password": ("password", str),
    "dbname": ("database", str),
    "connect_timeout": ("timeout", float),
    "timeout": ("timeout", float),
    "command_timeout": ("command_timeout", float),
    "sslmode": ("ssl", str),
    "ssl": ("ssl", str),
    "target_session_attrs": ("target_session_attrs", str),
    "krbsrvname": ("krbsrvname", str),
    "gsslib": ("gsslib", str),
    "passfile": ("passfile", str),
    "statement_cache_size": ("statement_cache_size", int),
}
# Parameters asyncpg reads from a connection string only: they travel in one of their own.
_IN_DSN = frozenset(
    {
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
    }
)
# Parameters libpq sends to the server when it connects (`options=-c search_path=app`).
_AT_STARTUP = frozenset({"options", "application_name"})
# Parameters SQLAlchemy reads itself (Unix socket directories, several hosts).
_IN_URL = frozenset({"host", "port", "prepared_statement_cache_size"})

# Stable constraint names, so that migrations can drop what they create.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of the ORM models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach the database of a DATABASE_URL with asyncpg."""

    url: URL
    connect_args: dict[str, Any]
    pooler: Pooler
    dropped: list[str]


def _detect_pooler(url: URL) -> Pooler:
    """The pooler a platform's URL implies: Supabase/Supavisor's port 6543, Neon's `-pooler`
    hosts and Prisma's `?pgbouncer=true` are transaction poolers."""
    if url.query.get("pgbouncer") == "true" or url.port == 6543:
        return "transaction"
    if "-pooler." in (url.host or ""):
        return "transaction"
    return "none"


def connect_options(database_url: str, pooler: Pooler | Literal["auto"] = "auto") -> ConnectOptions:
    """Translate DATABASE_URL for asyncpg; parameters it cannot take are listed in `dropped`."""
    url = make_url(database_url)
    args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    startup: dict[str, str] = {}
    dsn: dict[str, str] = {}
    kept: dict[str, str | tuple[str, ...]] = {}
    dropped = []
    for name, values in url.query.items():
        # A repeated parameter counts once, with its last value, as in libpq.
        value = values[-1] if isinstance(values, tuple) else values
        if name in _IN_URL:
            kept[name] = values
        elif name in _AT_STARTUP:
            startup[name] = value
        elif name in _IN_DSN:
            dsn[name] = value
        elif name in _KEYWORDS:
            keyword, kind = _KEYWORDS[name]
            try:
                args[keyword] = kind(value)
            except ValueError:
                dropped.append(name)
        else:
            dropped.append(name)
    if startup:
        args["server_settings"] = startup
    if dsn:
        args["dsn"] = f"postgresql://?{urlencode(dsn)}"
    return ConnectOptions(
        url=url.set(drivername="postgresql+asyncpg", query=kept),
        connect_args=args,
        pooler=_detect_pooler(url) if pooler == "auto" else pooler,
        dropped=sorted(dropped),
    )


def _statement_name() -> str:
    # Unique across every connection a transaction pooler may hand the next statement to.
    return f"__asyncpg_{uuid.uuid4()}__"


def engine_arguments(
    settings: DatabaseSettings, *, pooled: bool = True
) -> tuple[URL, dict[str, Any]]:
    """DATABASE_URL for asyncpg, and the keyword arguments of its engine.

    DATABASE_POOL_SIZE is the whole budget of one engine (no overflow): requests beyond it wait
    up to POOL_TIMEOUT_SECONDS for a connection. 0, or `pooled=False`, keeps none open: each
    unit of work connects and disconnects, for serverless functions and one-off commands.
    Behind a transaction pooler (DATABASE_POOLER, detected from the URL by default) prepared
    statements are neither cached nor reused by name, since the pooler may hand each statement
    to another server connection.
    """
    options = connect_options(settings.database_url, settings.database_pooler)
    if options.dropped:
        logger.warning(
            "DATABASE_URL parameters asyncpg cannot take were left out: %s",
            ", ".join(options.dropped),
            extra={"dropped": options.dropped},
        )
    connect_args = dict(options.connect_args)
    pooled = pooled and settings.database_pool_size > 0
    # Without a pool every connection is new, so a statement cache would never be hit either.
    if options.pooler == "transaction" or not pooled:
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _statement_name,
        }
    if not pooled:
        return options.url, {"poolclass": NullPool, "connect_args": connect_args}
    return options.url, {
        "poolclass": FairPool,
        "pool_size": settings.database_pool_size,
        "max_overflow": 0,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "connect_args": connect_args,
    }


def create_engine(settings: DatabaseSettings, *, pooled: bool = True) -> AsyncEngine:
    """An engine for DATABASE_URL that opens at most DATABASE_POOL_SIZE connections."""
    url, arguments = engine_arguments(settings, pooled=pooled)
    return create_async_engine(url, **arguments)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
