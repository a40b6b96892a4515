"""Database engine, sessions and the declarative base (engines are made in the lifespan)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, NullPool
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from .config import Settings

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


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine for DATABASE_URL that checks pooled connections before use.

    DATABASE_POOL_SIZE=0 keeps no pool in the process, for serverless functions behind an external
    transaction pooler (PgBouncer, Supavisor, Neon), where prepared statements must not be cached
    or reuse names across connections.
    """
    if settings.database_pool_size == 0:
        return create_async_engine(
            settings.async_database_url,
            poolclass=NullPool,
            connect_args={
                "timeout": 5,
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
            },
        )
    return create_async_engine(
        settings.async_database_url,
        pool_size=settings.database_pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": 5},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
