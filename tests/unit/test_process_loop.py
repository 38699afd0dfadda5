"""Processes outside uvicorn (the pricing worker) run on the same event loop as the APIs."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import uvloop

from alexandrite.kit.loops import run_process


def test_a_process_runs_on_uvloop_with_threads_and_signals_working() -> None:
    async def main() -> tuple[bool, str, bool]:
        loop = asyncio.get_running_loop()
        priced_in = await asyncio.to_thread(lambda: threading.current_thread().name)  # the pricing hand-off
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, stopped.set)  # as the worker's SIGTERM handler
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(stopped.wait(), 5)
        loop.remove_signal_handler(signal.SIGUSR1)
        return isinstance(loop, uvloop.Loop), priced_in, stopped.is_set()

    on_uvloop, priced_in, stopped = run_process(main())
    assert on_uvloop and stopped
    assert priced_in != threading.current_thread().name
