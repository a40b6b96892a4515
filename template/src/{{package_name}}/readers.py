"""Reading single documents: from PostgreSQL, or through a cache in front of it.

Routes ask a `DocumentReader` (dependencies.ReaderDep) and never know which one they have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select

from .models import Document
from .schemas import DocumentRead

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.ext.asyncio import AsyncEngine

# What a DocumentRead holds, and all a read selects.
READ = select(Document.id, Document.title, Document.content, Document.created_at)


class DocumentReader(Protocol):
    """Reads documents by id, and forgets what it holds of one that changed."""

    async def get(self, document_id: uuid.UUID) -> DocumentRead | None:
        """The document, or None when there is none."""

    async def forget(self, document_id: uuid.UUID) -> None:
        """Drop any copy of the document: it changed or is gone."""


class DatabaseReader:
    """Documents straight from PostgreSQL, one round trip each.

    `engine` runs statements outside a transaction (Resources.autocommit): one SELECT sees one
    consistent snapshot by itself, so a BEGIN and a ROLLBACK around it would be two more round
    trips for nothing. Its connection is its own, apart from the request's session.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, document_id: uuid.UUID) -> DocumentRead | None:
        """The document's current row."""
        async with self.engine.connect() as connection:
            result = await connection.execute(READ.where(Document.id == document_id))
            row = result.first()
        return None if row is None else DocumentRead.model_validate(row)

    async def forget(self, document_id: uuid.UUID) -> None:
        """Nothing to forget: every read asks the database."""
