"""Request sizes are limited while the request arrives: before authentication, before parsing, per route."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager

from alexandrite.kit.body_limit import BodyLimitMiddleware
from alexandrite.kit.header_limit import BoundedHttpToolsProtocol
from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app

MIB = 1024 * 1024
UPLOAD_LIMIT = 3 * MIB


@pytest.fixture(scope="module")
async def shop_app(settings: Settings) -> AsyncIterator[Any]:
    app = create_app(settings.replace(run_relay=False, run_consumer=False, run_webhooks=False,
                                      max_upload_bytes=UPLOAD_LIMIT))
    async with LifespanManager(app):
        yield app


class Feed:
    """A client that sends ``total`` bytes of body in ``chunk``-sized messages and counts what was taken."""

    def __init__(self, total: int, chunk: int = 256 * 1024, prefix: bytes = b"") -> None:
        self.total, self.chunk, self.taken, self.prefix = total, chunk, 0, prefix

    async def receive(self) -> dict[str, Any]:
        if self.taken >= self.total:
            await asyncio.sleep(3600)  # nothing more: a client that stalls
        size = min(self.chunk, self.total - self.taken)
        body = (self.prefix + b"x" * size)[:size] if self.taken == 0 else b"x" * size
        self.taken += size
        return {"type": "http.request", "body": body, "more_body": self.taken < self.total}


# The start of a well-formed multipart upload: the parser reads on into the file's bytes.
MULTIPART = {"content-type": "multipart/form-data; boundary=x"}
FILE_PART = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.stl"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n")


async def call(app: Any, method: str, path: str, headers: dict[str, str], feed: Feed) -> tuple[int, dict[str, Any]]:
    """One request straight through the ASGI app; the status and the JSON body of the answer."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("shop", 80)}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, feed.receive, send), 60)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body or b"null")


def _limit(app: Any) -> int:
    return int(app.state.settings.limits.max_body_bytes)


async def test_a_declared_oversized_upload_is_refused_before_a_byte_is_read(shop_app: Any) -> None:
    feed = Feed(1024 * MIB)  # 1 GiB, unauthenticated
    status, body = await call(shop_app, "PUT", f"/api/v1/orders/{uuid.uuid4()}/model",
                              {"content-type": "multipart/form-data; boundary=x", "content-length": str(1024 * MIB)},
                              feed)
    assert status == 413 and body["error"]["code"] in ("payload_too_large", "file_too_large")
    assert feed.taken == 0


async def test_an_anonymous_upload_is_held_to_the_small_limit(shop_app: Any) -> None:
    """Without any credential an upload route accepts no more than a JSON body: nothing big is spooled."""
    feed = Feed(2 * MIB, prefix=FILE_PART)
    status, body = await call(shop_app, "PUT", f"/api/v1/orders/{uuid.uuid4()}/model", MULTIPART, feed)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["max_bytes"] == _limit(shop_app)
    assert feed.taken <= _limit(shop_app) + feed.chunk


async def test_a_chunked_body_is_counted_as_it_streams(shop_app: Any) -> None:
    feed = Feed(100 * MIB)  # no Content-Length: chunked
    status, body = await call(shop_app, "POST", "/api/v1/auth/token", {"content-type": "application/json"}, feed)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert feed.taken <= _limit(shop_app) + feed.chunk  # stopped at the limit, not after 100 MB


async def test_a_large_json_sign_in_is_refused_by_its_length(shop_app: Any) -> None:
    feed = Feed(60 * MIB)
    status, body = await call(shop_app, "POST", "/api/v1/auth/token",
                              {"content-type": "application/json", "content-length": str(60 * MIB)}, feed)
    assert (status, body["error"]["code"], feed.taken) == (413, "payload_too_large", 0)


async def test_a_signed_in_upload_gets_the_upload_limit(shop_app: Any, settings: Settings) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(shop_app), base_url="http://shop") as client:
        email = f"big-{uuid.uuid4().hex[:8]}@example.test"
        await client.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass", "name": "B"})
        token = (await client.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        order = (await client.post("/api/v1/orders", headers=auth, json={"alloy": "gold_585"})).json()
        model = to_binary_stl(ring(segments=384, profile_segments=32))
        assert _limit(shop_app) < len(model) < UPLOAD_LIMIT  # over the JSON limit, under the upload limit
        ok = await client.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                              files={"file": ("ring.stl", model, "application/octet-stream")})
        assert ok.status_code == 200, ok.text
        too_big = await client.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                                   files={"file": ("big.stl", b"\0" * (UPLOAD_LIMIT + 200 * 1024), "x")})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "file_too_large"
    feed = Feed(UPLOAD_LIMIT * 4, prefix=FILE_PART)  # streamed without a length: stopped at the upload limit
    status, body = await call(shop_app, "PUT", f"/api/v1/orders/{order['id']}/model", {**auth, **MULTIPART}, feed)
    assert status == 413 and body["error"]["code"] == "file_too_large"
    assert feed.taken <= UPLOAD_LIMIT + 64 * 1024 + feed.chunk


async def test_a_json_route_keeps_the_small_limit_even_when_signed_in(shop_app: Any) -> None:
    feed = Feed(2 * MIB)
    status, body = await call(shop_app, "POST", "/api/v1/orders",
                              {"authorization": "Bearer whatever", "content-type": "application/json"}, feed)
    assert status == 413 and body["error"]["details"]["max_bytes"] == _limit(shop_app)


async def test_bad_lengths_and_oversized_heads_are_refused(shop_app: Any) -> None:
    feed = Feed(10)
    status, body = await call(shop_app, "POST", "/api/v1/auth/token", {"content-length": "12abc"}, feed)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = await call(shop_app, "GET", "/health/live", {"x-big": "a" * 64 * 1024}, feed)
    assert (status, body["error"]["code"]) == (431, "headers_too_large")


async def test_the_middleware_alone_stops_reading_at_the_limit() -> None:
    pulled: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:  # an application that would read everything
            message = await receive()
            pulled.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break

    limited = BodyLimitMiddleware(app, default_bytes=MIB, max_header_bytes=16 * 1024)
    status, body = await call(limited, "POST", "/anything", {}, Feed(50 * MIB))
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert sum(pulled) <= MIB + 256 * 1024


# --- a real uvicorn server with the bounded protocol --------------------------------------------


@pytest.fixture(scope="module")
def real_server(settings: Settings) -> Iterator[int]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(size).encode()})

    wrapped = BodyLimitMiddleware(app, default_bytes=MIB, max_header_bytes=settings.limits.max_header_bytes)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(wrapped, http=BoundedHttpToolsProtocol, lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _exchange(port: int, head: bytes, body_chunks: Iterator[bytes] = iter(())) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        try:
            conn.sendall(head)
            for chunk in body_chunks:
                conn.sendall(chunk)
        except OSError:  # the server closed the connection while we were still sending
            pass
        answer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    return answer


def test_uvicorn_refuses_an_oversized_request_head(real_server: int, settings: Settings) -> None:
    small = _exchange(real_server, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1000 + b"\r\nConnection: close\r\n\r\n")
    assert small.startswith(b"HTTP/1.1 200")
    big = b"a" * (settings.limits.max_header_bytes * 8)
    pieces = (big[i:i + 8192] for i in range(0, len(big), 8192))
    answer = _exchange(real_server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", pieces)
    assert answer.startswith(b"HTTP/1.1 431") and b"headers_too_large" in answer


def test_uvicorn_stops_a_chunked_body_at_the_limit(real_server: int) -> None:
    chunk = b"x" * 65536
    body = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(100 * 16))  # 100 MB, chunked
    answer = _exchange(real_server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", body)
    assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer


def test_uvicorn_counts_only_head_bytes_as_head(real_server: int) -> None:
    """A body many times the head limit, sent with its head and after it, on one kept-alive connection."""
    body = b"y" * (900 * 1024)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", real_server), timeout=20) as conn:
        for _ in range(2):
            conn.sendall(head + body)
            answer = b""
            while not answer.endswith(b"\r\n0\r\n\r\n"):  # the chunked answer's last chunk
                data = conn.recv(65536)
                assert data, answer
                answer += data
            assert answer.startswith(b"HTTP/1.1 200") and str(len(body)).encode() in answer, answer[:200]
