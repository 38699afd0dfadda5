"""A minimal HTTP/1.1 keep-alive client for load generation, on asyncio streams.

A load generator on the machine it measures takes CPU from what it measures: httpx spent about a third of
a core submitting ~45 orders/s in bench_pipeline.py. This one does no more than a load generator must
(one request per connection at a time, ``Content-Length`` or chunked bodies, reconnecting when the server
closes), so the cores are left to the platform. Not a general client: no TLS, no redirects, no cookies.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class LightClient:
    def __init__(self, base_url: str, connections: int, *, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(connections):
            self._idle.put_nowait(None)  # opened on first use

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        stream = await self._idle.get()
        try:
            if stream is None:
                stream = await asyncio.open_connection(self.host, self.port)
            reader, writer = stream
            writer.write(payload)
            status, answer, content = await asyncio.wait_for(_response(reader), self.timeout)
            if answer.get("connection", "").lower() == "close":
                writer.close()
                stream = None
            return status, answer, content
        except BaseException:
            if stream is not None:
                stream[1].close()
            stream = None
            raise
        finally:
            self._idle.put_nowait(stream)

    async def close(self) -> None:
        while not self._idle.empty():
            stream = self._idle.get_nowait()
            if stream is not None:
                stream[1].close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        return status, headers, b"".join(chunks)
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))
