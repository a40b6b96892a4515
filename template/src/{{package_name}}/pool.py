"""A connection pool that serves waiting requests in the order they came.

SQLAlchemy's asyncio pool lets a checkout that arrives while others wait take a connection that
was just returned, before the longest waiter wakes up; the waiter then queues again at the back.
Under load a few requests lose that race over and over, for seconds, while the median stays low.
Here a returned connection goes straight to the longest waiter, and a checkout waits whenever
anyone is waiting already.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry


class FairQueue(AsyncAdaptedQueue["ConnectionPoolEntry"]):
    """The pool's idle connections; a returned one is handed to the longest waiter."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self.waiters: deque[asyncio.Future[ConnectionPoolEntry]] = deque()

    def put_nowait(self, item: ConnectionPoolEntry) -> None:
        """Hand `item` to the longest waiter, else keep it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        """An idle connection, at once if nobody waits for one, else in turn."""
        if not block or not self.waiters:
            try:
                return self.get_nowait()
            except Empty:
                if not block:
                    raise
        waiter: asyncio.Future[ConnectionPoolEntry] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await_(asyncio.wait_for(waiter, timeout))
        except BaseException as exc:
            # Timed out or cancelled just as a connection was handed over: the next in line gets it.
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())
            if isinstance(exc, TimeoutError):
                raise Empty from exc
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)


class FairPool(AsyncAdaptedQueuePool):
    """AsyncAdaptedQueuePool, first come first served."""

    _queue_class: Any = FairQueue
