"""The documents resource: reads and writes, and every bad request answered with a 4xx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from .conftest import API_KEY, Sent, serving


def assert_error(response: httpx.Response, status: int) -> None:
    """An error response: JSON with a detail and the request id, which the header repeats."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["detail"]


async def test_create_then_read(client: AsyncClient) -> None:
    created = await client.post("/documents", json={"title": "Hello", "content": "one two three"})
    assert created.status_code == 201
    document = created.json()
    assert document["title"] == "Hello"
    read = await client.get(f"/documents/{document['id']}")
    assert read.status_code == 200
    assert read.json() == document


async def test_reads_are_single_statements_outside_a_transaction(
    client: AsyncClient, statements: list[Sent]
) -> None:
    document = (await client.post("/documents", json={"title": "t", "content": "c"})).json()
    statements.clear()
    assert (await client.get(f"/documents/{document['id']}")).json() == document
    assert (await client.get("/documents")).json()["items"] == [document]
    # One SELECT by id, then the count and the page: no BEGIN or ROLLBACK around any of them.
    assert [(sent.sql.split()[0], sent.autocommit) for sent in statements] == [("SELECT", True)] * 3


async def test_list_pages_newest_first(client: AsyncClient) -> None:
    for number in range(5):
        response = await client.post("/documents", json={"title": f"d{number}", "content": "x"})
        assert response.status_code == 201
    page = await client.get("/documents", params={"limit": 2, "offset": 1})
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 5
    assert (body["limit"], body["offset"]) == (2, 1)
    assert [item["title"] for item in body["items"]] == ["d3", "d2"]


async def test_the_deepest_page_is_empty_not_an_error(client: AsyncClient) -> None:
    page = await client.get("/documents", params={"offset": 2**31 - 1})
    assert page.status_code == 200
    assert page.json()["items"] == []


async def test_delete(client: AsyncClient) -> None:
    document = (await client.post("/documents", json={"title": "t", "content": "c"})).json()
    assert (await client.delete(f"/documents/{document['id']}")).status_code == 204
    assert_error(await client.get(f"/documents/{document['id']}"), 404)
    assert_error(await client.delete(f"/documents/{document['id']}"), 404)


async def test_unknown_document_is_404(client: AsyncClient) -> None:
    response = await client.get(f"/documents/{uuid.uuid4()}")
    assert_error(response, 404)
    assert response.json()["detail"] == "Document not found"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
async def test_api_key_is_required(client: AsyncClient, headers: dict[str, str]) -> None:
    client.headers.pop("X-API-Key")
    response = await client.get("/documents", headers=headers)
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "APIKey"


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "content": "c"},
        {"title": "t"},
        {"title": "t" * 201, "content": "c"},
        {"title": "t", "content": 5},
        # PostgreSQL text cannot hold NUL.
        {"title": "nul\u0000", "content": "c"},
        {"title": "t", "content": "nul\u0000"},
    ],
)
async def test_invalid_documents_are_rejected(client: AsyncClient, body: dict[str, object]) -> None:
    assert_error(await client.post("/documents", json=body), 422)


@pytest.mark.parametrize(
    "raw",
    [
        # An unpaired surrogate is valid JSON, but no string of Unicode characters.
        rb'{"title": "\ud800", "content": "c"}',
        rb'{"title": "t", "content": "x\udfff"}',
        b'{"title": "t", "content": NaN}',
        b'{"title": "t", "content": ',  # truncated
        b"[]",
    ],
)
async def test_invalid_json_is_rejected_without_echoing_it(client: AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/documents", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422)
    assert all(set(mismatch) == {"loc", "msg", "type"} for mismatch in response.json()["detail"])


async def test_a_body_that_is_not_utf8_is_a_400(client: AsyncClient) -> None:
    response = await client.post(
        "/documents", content=b'{"title": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 2**31},
        {"offset": 2**63},
        {"offset": 10**30},
        {"offset": -1},
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
    ],
)
async def test_paging_out_of_range_is_a_422(
    client: AsyncClient, params: dict[str, int | str]
) -> None:
    assert_error(await client.get("/documents", params=params), 422)


@pytest.mark.parametrize("document_id", ["nope", "0" * 100, "%00"])
async def test_paths_without_a_document_id_are_not_found(
    client: AsyncClient, document_id: str
) -> None:
    assert_error(await client.get(f"/documents/{document_id}"), 404)


async def test_a_405_names_every_method_of_the_path(client: AsyncClient) -> None:
    response = await client.put("/documents")
    assert_error(response, 405)
    assert response.headers["allow"] == "GET, HEAD, POST"


async def test_a_declared_body_over_the_limit_is_refused_unread(client: AsyncClient) -> None:
    # MAX_BODY_BYTES is 10 MiB by default; this body is twice that.
    body = b'{"title": "t", "content": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/documents", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413)


async def test_a_streamed_body_over_the_limit_is_cut_off(
    app_with: Callable[..., FastAPI],
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"title": "t", "content": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    async with serving(app_with(max_body_bytes=1024), **{"X-API-Key": API_KEY}) as client:
        response = await client.post(
            "/documents", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert_error(response, 413)
