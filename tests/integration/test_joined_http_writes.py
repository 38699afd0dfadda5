"""A response's head and body leave in one send (kit/joined_writes.py): on a loopback socket, and through
the API's own uvicorn protocol answering real requests."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import uvicorn

from alexandrite.kit.header_limit import BoundedHttpToolsProtocol
from alexandrite.kit.joined_writes import DIRECT_BYTES, TurnJoinedTransport


class _Keep(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def _pair() -> tuple[TurnJoinedTransport, _Keep, asyncio.Server]:
    loop = asyncio.get_running_loop()
    server_side = _Keep()
    server = await loop.create_server(lambda: server_side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    return TurnJoinedTransport(transport, loop), server_side, server  # type: ignore[arg-type]


async def _until(keep: _Keep, size: int) -> bytes:
    for _ in range(500):
        if len(keep.received) >= size:
            break
        await asyncio.sleep(0.01)
    return bytes(keep.received)


async def test_writes_of_one_turn_leave_in_one_send_in_order() -> None:
    joined, keep, server = await _pair()
    try:
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        joined.write(head)
        joined.writelines([b"o", b"k"])
        joined.write(b"")
        assert joined.flushes == 0 and joined.get_write_buffer_size() == len(head) + 2
        await asyncio.sleep(0)
        assert joined.flushes == 1
        big = b"x" * DIRECT_BYTES
        joined.write(b"small;")
        joined.write(big)  # large: handed on at once, behind what waited
        assert joined.flushes == 3
        joined.write(b"last")
        joined.close()  # what waits leaves before the close
        expected = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" + b"small;" + big + b"last"
        assert await _until(keep, len(expected)) == expected
        await asyncio.wait_for(keep.closed.wait(), 10)
        assert joined.is_closing()  # the wrapped transport's own
    finally:
        server.close()
        await server.wait_closed()


async def test_the_api_protocol_answers_each_request_in_one_send() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b'{"ok":true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=BoundedHttpToolsProtocol, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [await client.get("/") for _ in range(5)]  # one kept-alive connection
            [protocol] = list(server.server_state.connections)
            assert isinstance(protocol.transport, TurnJoinedTransport)
            assert protocol.transport.flushes == 5  # one buffer per answer, head and body together
        assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * 5
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
