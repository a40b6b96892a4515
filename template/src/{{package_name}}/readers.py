"""Reading single documents: from PostgreSQL, or through a cache in front of it.

Routes ask a `DocumentReader` (dependencies.ReaderDep) and never know which one they have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .models import Document
from .schemas import DocumentRead

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.ext.asyncio import AsyncSession


class DocumentReader(Protocol):
    """Reads documents by id, and forgets what it holds of one that changed."""

    async def get(self, document_id: uuid.UUID) -> DocumentRead | None:
        """The document, or None when there is none."""

    async def forget(self, document_id: uuid.UUID) -> None:
        """Drop any copy of the document: it changed or is gone."""


class DatabaseReader:
    """Documents straight from PostgreSQL."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, document_id: uuid.UUID) -> DocumentRead | None:
        """The document's current row."""
        document = await self.session.get(Document, document_id)
        return None if document is None else DocumentRead.model_validate(document)

    async def forget(self, document_id: uuid.UUID) -> None:
        """Nothing to forget: every read asks the database."""
