"""The naive baseline: the service's read endpoints, written the obvious way.

Sync handlers (FastAPI runs them in its thread pool), a SQLAlchemy Session over psycopg per
request with the engine's default pool, no cache, whole rows loaded (embeddings included). It
answers what the service answers, so that wrk loads both alike and the bench can check they agree.

It runs in the generated project's virtualenv (same FastAPI, SQLAlchemy, pgvector and uvicorn),
with psycopg added: `uvicorn --factory baseline:create_app --app-dir bench`, DATABASE_URL and
API_KEY set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pgvector.sqlalchemy import Vector
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, String, Text, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    """The ORM base."""


class Document(Base):
    """The service's documents table, as its migrations made it."""

    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float] | None] = mapped_column(Vector())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DocumentOut(BaseModel):
    """A document as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    content: str
    created_at: datetime


class DocumentPage(BaseModel):
    """A page of documents, newest first."""

    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class SearchQuery(BaseModel):
    """An embedding to find the nearest documents to."""

    embedding: list[float]
    limit: int = 10


class SearchHit(DocumentOut):
    """A document and its cosine distance to the query."""

    distance: float


def get_session(request: Request) -> Iterator[Session]:
    """A session for the request."""
    with Session(request.app.state.engine) as session:
        yield session


def check_api_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """401 unless the request carries the API key."""
    if x_api_key != request.app.state.api_key:
        raise HTTPException(401, "Missing or invalid X-API-Key header")


SessionDep = Annotated[Session, Depends(get_session)]
Protected = [Depends(check_api_key)]


def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


def list_documents(session: SessionDep, limit: int = 20, offset: int = 0) -> DocumentPage:
    """A page of documents, newest first."""
    total = session.scalar(select(func.count()).select_from(Document))
    rows = session.scalars(
        select(Document)
        .order_by(Document.created_at.desc(), Document.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return DocumentPage(
        items=[DocumentOut.model_validate(row) for row in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


def get_document(document_id: uuid.UUID, session: SessionDep) -> DocumentOut:
    """One document."""
    document = session.get(Document, document_id)
    if document is None:
        raise HTTPException(404, "Document not found")
    return DocumentOut.model_validate(document)


def search_documents(query: SearchQuery, session: SessionDep) -> list[SearchHit]:
    """The documents nearest to the query's embedding."""
    distance = Document.embedding.cosine_distance(query.embedding).label("distance")
    rows = session.execute(
        select(Document, distance)
        .where(Document.embedding.is_not(None))
        .order_by(distance)
        .limit(query.limit)
    ).all()
    return [
        SearchHit(**DocumentOut.model_validate(row).model_dump(), distance=score)
        for row, score in rows
    ]


def create_app() -> FastAPI:
    """The app, on the database of DATABASE_URL (through psycopg), guarded by API_KEY."""
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    app = FastAPI(title="naive baseline")
    app.state.engine = create_engine(url)
    app.state.api_key = os.environ["API_KEY"]
    app.get("/health")(health)
    app.get("/documents", dependencies=Protected)(list_documents)
    app.get("/documents/{document_id}", dependencies=Protected)(get_document)
    app.post("/documents/search", dependencies=Protected)(search_documents)
    return app
