"""Server-sent events: a short stream that shows responses reach clients as they are written.

Through a proxy that buffers responses, the ticks arrive all at once at the end instead of
TICK_SECONDS apart. The response carries `X-Accel-Buffering: no`, which turns nginx's
buffering off for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from .. import errors
from ..schemas import Tick

TICK_SECONDS = 0.2
MAX_TICKS = 5

router = APIRouter(prefix="/events", tags=["events"])


@router.get(
    "/ticks",
    response_class=EventSourceResponse,
    responses=errors.responses(401, 413, 422, streaming=True),
)
async def ticks(
    count: Annotated[int, Query(ge=1, le=MAX_TICKS)] = 3,
) -> AsyncIterator[ServerSentEvent]:
    """`count` events named "tick", TICK_SECONDS apart, each with its number as id."""
    for number in range(1, count + 1):
        if number > 1:
            await asyncio.sleep(TICK_SECONDS)
        yield ServerSentEvent(data=Tick(tick=number, of=count), event="tick", id=str(number))
