"""Group flushing: side effects that arrive while one flush is on the wire go out together in the next.

After-commit side effects in Redis (dropping cached pages, announcing a change to watchers) are one round
trip each. Under load many units commit at once (a consumer handles up to its prefetch of messages
concurrently), so :class:`Coalescer` sends them the way a database groups commits: the first call flushes
at once; calls arriving while that flush runs are queued and sent together by one next flush. An idle
process pays no delay; a busy one makes one round trip per flush instead of one per change. Each caller
waits until its own item was flushed (a page read after the commit's response never comes from a cache
the commit made stale) and gets that flush's answer; a cancelled caller's item is flushed all the same.

:class:`HeldBatches` is the fire-and-forget kind, for effects nobody waits for (announcing a change to
live watchers): the caller goes on at once, and items are held ``hold_seconds`` from the first of a batch,
so a busy process sends one batch per hold instead of one per item (and its requests and acks do not wait
for Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``flush(items)`` sends a batch; :meth:`submit` queues one item and returns its batch's answer."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[R]]) -> None:
        self._flush = flush
        self._queued: list[T] = []
        self._next: asyncio.Future[R] | None = None
        self._drain: asyncio.Task[None] | None = None
        self.flushes = 0  # batches sent (for tests and profiles)

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._next is not None and self._next.get_loop() is not loop:
            self._next = None  # left by a loop that is gone (its callers with it): its items go out with ours
        self._queued.append(item)
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieved)
        future = self._next
        if self._drain is None or self._drain.done() or self._drain.get_loop() is not loop:
            self._drain = loop.create_task(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while self._queued:
            items, batch = self._queued, self._next
            self._queued, self._next = [], None
            assert batch is not None
            self.flushes += 1
            try:
                result = await self._flush(items)
            except asyncio.CancelledError:  # the process is stopping
                batch.cancel()
                raise
            except Exception as error:  # every waiter of the batch hears of it
                if not batch.done():
                    batch.set_exception(error)
            else:
                if not batch.done():
                    batch.set_result(result)


class HeldBatches(Generic[T]):
    """``flush(items)`` sends a batch (and handles its own errors); :meth:`submit` queues one item and returns
    at once. One task sends what is queued ``hold_seconds`` after the first item of a batch (0: at the next
    loop turn), in order; :meth:`drain` waits until everything queued so far was sent."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], hold_seconds: float = 0.0) -> None:
        self._flush = flush
        self._hold = hold_seconds
        self._queued: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0  # batches sent (for tests and profiles)

    def submit(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        self._queued.append(item)  # items left by a loop that is gone go out with this one's
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def drain(self) -> None:
        task = self._task
        while task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(task)
            task = self._task

    async def _run(self) -> None:
        while self._queued:
            await asyncio.sleep(self._hold)
            items, self._queued = self._queued, []
            self.flushes += 1
            try:
                await self._flush(items)
            except Exception as error:  # a flush that let an error out: its items are dropped, not the next
                log.warning("held_batch_failed", error=repr(error)[:200], items=len(items))


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A batch whose callers were all cancelled logs no "exception never retrieved"."""
    if not future.cancelled():
        future.exception()
