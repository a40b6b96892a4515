"""Routes that run a read again when the database connection dropped under it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from fastapi import Request, Response

logger = logging.getLogger(__name__)

# For `openapi_extra`: an operation that only reads, whatever its method (a search by POST).
IDEMPOTENT: dict[str, Any] = {"x-idempotent": True}
SAFE_METHODS = frozenset({"GET", "HEAD"})


class RetryReads(APIRoute):
    """Run a read-only operation once more when its database connection dropped under it.

    A restarted or failed-over database closes every connection; the pool then connects anew,
    so the second run usually succeeds where the first could not. Writes are never run twice:
    an INSERT whose COMMIT was cut off may have happened, and only the client can decide.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, wrapped in one retry when this operation only reads."""
        handle = super().get_route_handler()
        reads = self.methods is not None and self.methods <= SAFE_METHODS
        if not (reads or (self.openapi_extra or {}).get("x-idempotent")):
            return handle

        async def handle_with_retry(request: Request) -> Response:
            try:
                return await handle(request)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                logger.warning("database connection dropped under %s; running it again", self.path)
                return await handle(request)

        return handle_with_retry
