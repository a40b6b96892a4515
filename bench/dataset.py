"""The documents the service is measured on, and the loads (endpoints) that read them.

1,000 documents are stored through the API, every other one with an embedding. Both list loads
read the newest page of 20 with the same query: "list without" while that page's embeddings are
cleared, "list with" while they are filled (the database is switched between the two), so the
only difference is the embeddings in the rows read.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .backing import Backing
from .client import call
from .wrk import Load

DOCUMENTS = 1000
PAGE = 20
# The page both list loads read, kept aside so that its embeddings can be cleared and restored.
PAGE_TABLE = "bench_page"


@dataclass(frozen=True)
class Dataset:
    """What was stored: every id (newest last), one id with an embedding, a query vector."""

    ids: tuple[str, ...]
    embedded_id: str
    query: tuple[float, ...]


@dataclass(frozen=True)
class Endpoint:
    """A load measured on the service and on the baseline, with its goal against the baseline."""

    name: str
    label: str
    load: Load
    versus_baseline: float  # the service's req/s must be at least this times the baseline's
    page_filled: bool = True  # the newest page's embeddings while it is measured
    cache_emptied: bool = False  # Redis kept empty while it is measured: every read misses


def vector(rng: random.Random, dimensions: int) -> tuple[float, ...]:
    """A random embedding."""
    return tuple(round(rng.uniform(-1, 1), 4) for _ in range(dimensions))


def document(n: int, rng: random.Random, dimensions: int, *, embedded: bool) -> dict[str, Any]:
    """The body that creates document `n`."""
    body: dict[str, Any] = {
        "title": f"Document {n}",
        "content": " ".join(
            rng.choice(("lorem", "ipsum", "dolor", "sit", "amet")) for _ in range(80)
        ),
    }
    if embedded:
        body["embedding"] = vector(rng, dimensions)
    return body


def seed(base_url: str, headers: dict[str, str], dimensions: int) -> Dataset:
    """Store the documents through the API; the page both list loads read is stored last."""
    rng = random.Random(1536)
    older = [document(n, rng, dimensions, embedded=n % 2 == 0) for n in range(DOCUMENTS - PAGE)]
    page = [document(n, rng, dimensions, embedded=True) for n in range(DOCUMENTS - PAGE, DOCUMENTS)]

    def create(body: dict[str, Any]) -> str:
        return str(call("POST", f"{base_url}/documents", body, headers)["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, older))
    ids += [create(body) for body in page]  # one by one, so that they are the newest, in order
    return Dataset(tuple(ids), embedded_id=ids[0], query=vector(rng, dimensions))


def keep_page(backing: Backing) -> None:
    """Copy the newest page's ids and embeddings aside, to switch its embeddings later."""
    backing.psql(
        f"CREATE TABLE {PAGE_TABLE} AS SELECT id, embedding FROM documents "
        f"ORDER BY created_at DESC, id LIMIT {PAGE}"
    )


def fill_page(backing: Backing, *, filled: bool) -> None:
    """Clear or restore the newest page's embeddings, then vacuum away the old row versions."""
    value = "p.embedding" if filled else "NULL"
    backing.psql(
        f"UPDATE documents AS d SET embedding = {value} FROM {PAGE_TABLE} AS p WHERE d.id = p.id",
        "VACUUM ANALYZE documents",
    )


def endpoints(dataset: Dataset) -> list[Endpoint]:
    """The loads, in the order each round measures them."""
    search = json.dumps({"embedding": dataset.query, "limit": 10})
    every_document = tuple(f"/documents/{id_}" for id_ in dataset.ids)
    page = f"/documents?limit={PAGE}"
    return [
        Endpoint(
            "list_without",
            "list, page without embeddings",
            Load("GET", page),
            1.5,
            page_filled=False,
        ),
        Endpoint("list_with", "list, page with embeddings", Load("GET", page), 1.5),
        Endpoint(
            "get_hit", "get by id, cache hit", Load("GET", f"/documents/{dataset.embedded_id}"), 1.5
        ),
        Endpoint(
            "get_miss",
            "get by id, cache miss",
            Load("GET", every_document[0], cycle=every_document),
            1.5,
            cache_emptied=True,
        ),
        Endpoint("search", "vector search", Load("POST", "/documents/search", search), 1.5),
        Endpoint("health", "/health", Load("GET", "/health"), 1.2),
    ]


def fingerprint(body: Any) -> Any:
    """What two apps must agree on in an answer: everything but search distances' last digits."""
    if isinstance(body, list):
        return [fingerprint(item) for item in body]
    if isinstance(body, dict):
        return {k: round(v, 6) if k == "distance" else fingerprint(v) for k, v in body.items()}
    return body
