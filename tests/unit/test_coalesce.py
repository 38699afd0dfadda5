"""Group flushing: calls arriving during a flush go out together in the next one, each caller waits for
its own item, errors reach every caller of the batch, a cancelled caller's item is still sent."""

from __future__ import annotations

import asyncio

import pytest

from alexandrite.kit import db as kit_db
from alexandrite.kit.coalesce import Coalescer
from alexandrite.kit.db import run_after_commit


class Wire:
    """A flush that takes a while and records each batch it was given."""

    def __init__(self, delay: float = 0.01, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on

    async def flush(self, items: list[int]) -> int:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ConnectionError("the wire broke")
        return len(self.batches)


async def on_the_wire(delay: float = 0.02) -> tuple[Wire, Coalescer[int, int], asyncio.Future[int]]:
    """A coalescer whose first flush (of item 1) is under way."""
    wire = Wire(delay=delay)
    coalescer = Coalescer(wire.flush)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    return wire, coalescer, first


async def test_a_lone_call_is_flushed_at_once_on_its_own() -> None:
    wire = Wire()
    coalescer = Coalescer(wire.flush)
    assert await coalescer.submit(1) == 1
    assert await coalescer.submit(2) == 2
    assert wire.batches == [[1], [2]]


async def test_calls_made_during_a_flush_go_out_together_in_order() -> None:
    wire = Wire()
    coalescer = Coalescer(wire.flush)
    first = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0.001)  # its flush is on the wire
    answers = await asyncio.gather(*(coalescer.submit(n) for n in range(1, 50)))
    assert await first == 1
    assert wire.batches == [[0], list(range(1, 50))]  # everything queued behind it went out in one
    assert answers == [2] * 49  # each caller gets its own batch's answer
    together = await asyncio.gather(*(coalescer.submit(n) for n in range(50, 60)))  # made in one loop turn
    assert wire.batches[2:] == [list(range(50, 60))] and together == [3] * 10


async def test_a_caller_returns_only_once_its_item_was_sent() -> None:
    wire, coalescer, first = await on_the_wire()
    second = asyncio.ensure_future(coalescer.submit(2))
    await first
    assert not second.done() and wire.batches == [[1], [2]]  # 2 is on the wire, not yet through
    await second


async def test_a_failed_flush_reaches_every_caller_of_that_batch_only() -> None:
    wire = Wire(fail_on=3)
    coalescer = Coalescer(wire.flush)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0.001)
    results = await asyncio.gather(*(coalescer.submit(n) for n in (2, 3, 4)), return_exceptions=True)
    assert await first == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await coalescer.submit(5) == 3  # the next batch goes out as usual


async def test_a_cancelled_callers_item_is_still_sent() -> None:
    wire, coalescer, first = await on_the_wire()
    gone = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await first
    await asyncio.sleep(0.05)
    assert wire.batches == [[1], [2]]


# --- a committed unit's side effects ---------------------------------------------------------------

async def test_a_units_side_effects_start_in_order_and_wait_together() -> None:
    wire = Wire(delay=0.02)
    coalescer = Coalescer(wire.flush)
    seen: list[str] = []

    async def announce(n: int) -> None:
        seen.append(f"start {n}")
        await coalescer.submit(n)

    def count() -> None:
        seen.append("count")

    await run_after_commit([lambda: announce(1), count, lambda: announce(2), lambda: announce(3)])
    assert seen == ["count", "start 1", "start 2", "start 3"]  # plain callbacks at once, I/O after, in order
    assert wire.batches == [[1, 2, 3]]  # one round trip for the unit's three


async def test_a_failing_side_effect_is_logged_and_the_others_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("metrics down")

    async def refused() -> None:
        raise ConnectionError("redis down")

    async def fine() -> None:
        await asyncio.sleep(0)
        done.append("fine")

    def after() -> None:
        done.append("after")

    logged: list[str] = []

    class Log:
        def exception(self, event: str, **_: object) -> None:
            logged.append(event)

        error = exception

    monkeypatch.setattr(kit_db, "log", Log())
    await run_after_commit([broken, refused, fine, after])
    assert done == ["after", "fine"]
    assert logged == ["after_commit_callback_failed"] * 2


def test_a_coalescer_outlives_the_event_loop_it_was_first_used_in() -> None:
    """A process's objects may meet several loops (tests, a restarted runner): one that ended mid-flush,
    with items still queued, leaves no future or task of its own behind for the next loop to wait on."""
    wire = Wire(delay=0.05)
    coalescer = Coalescer(wire.flush)

    async def cut_short() -> None:
        asyncio.ensure_future(coalescer.submit(1))
        await asyncio.sleep(0.001)  # 1 is on the wire
        asyncio.ensure_future(coalescer.submit(2))  # queued behind it when the loop ends
        await asyncio.sleep(0.001)

    asyncio.run(cut_short())

    async def next_loop() -> int:
        return await asyncio.wait_for(coalescer.submit(3), 5)

    assert asyncio.run(next_loop()) >= 2
    assert wire.batches[0] == [1] and wire.batches[-1][-1] == 3 and 2 in wire.batches[-1]
