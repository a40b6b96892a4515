"""Documents, the example resource: create, read, list and delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import func, select

from .. import errors
from ..dependencies import ReaderDep, ReadsDep, SessionDep
from ..models import Document
from ..readers import READ
from ..schemas import DocumentCreate, DocumentPage, DocumentRead
from .routing import RetryReads

# The deepest page start (2^31 - 1, an int32 in any client): deeper pages want a narrower query.
MAX_OFFSET = 2_147_483_647

# Document paths take `{document_id:uuid}`: only a UUID routes to a document, so that a path such
# as /documents/search is never read as a document id.
router = APIRouter(
    prefix="/documents",
    tags=["documents"],
    route_class=RetryReads,
    responses=errors.responses(422, 503),
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors.responses(400, 413))
async def create_document(body: DocumentCreate, session: SessionDep) -> DocumentRead:
    """Store a document."""
    document = Document(**body.model_dump())
    session.add(document)
    await session.commit()
    return DocumentRead.model_validate(document)


@router.get("")
async def list_documents(
    reads: ReadsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DocumentPage:
    """A page of documents, newest first."""
    total = await reads.scalar(select(func.count()).select_from(Document))
    newest_first = READ.order_by(Document.created_at.desc(), Document.id)
    rows = await reads.execute(newest_first.limit(limit).offset(offset))
    return DocumentPage(
        items=[DocumentRead.model_validate(row) for row in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


@router.get("/{document_id:uuid}", responses=errors.responses(404))
async def get_document(document_id: uuid.UUID, reader: ReaderDep) -> DocumentRead:
    """One document."""
    document = await reader.get(document_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Document not found")
    return document


@router.delete(
    "/{document_id:uuid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors.responses(404)
)
async def delete_document(
    document_id: uuid.UUID, session: SessionDep, reader: ReaderDep
) -> Response:
    """Delete a document."""
    document = await session.get(Document, document_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Document not found")
    await session.delete(document)
    await session.commit()
    await reader.forget(document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
