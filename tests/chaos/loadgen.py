"""Open-loop load generator light enough to offer 10x capacity on the same two cores as the platform.

Each generator process owns a share of one schedule (attempt i starts at ``start + i / rate``) and
sends pre-built HTTP/1.1 requests over a keep-alive connection pool on plain asyncio streams: no
HTTP library, no per-request encoding beyond the order id and an idempotency key. Attempts start on
schedule whatever the answers; an attempt that cannot start (the process already keeps
``max_open`` attempts open) is counted, never hidden. Standard library only, so a spawned process
starts fast and imports nothing of the platform.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

BOUNDARY = "alexandrite-load-boundary"


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    tokens: tuple[str, ...]
    model: bytes
    rate: float  # attempts per second, all generator processes together
    start: float  # wall-clock time.time() of attempt 0
    duration: float
    share: int  # this process sends attempts share, share + shares, ...
    shares: int
    max_open: int = 2000
    timeout: float = 30.0


class Requests:
    """The three requests of an attempt, encoded once; only ids and keys change per attempt."""

    def __init__(self, plan: Plan) -> None:
        self.host = f"{plan.host}:{plan.port}".encode()
        self.auth = [f"Bearer {token}".encode() for token in plan.tokens]
        self.create_body = json.dumps({"alloy": "gold_585"}).encode()
        self.upload_body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ring.stl\"\r\n"
                            f"Content-Type: application/octet-stream\r\n\r\n").encode() + plan.model + \
            f"\r\n--{BOUNDARY}--\r\n".encode()

    def _request(self, method: bytes, path: bytes, auth: bytes, body: bytes = b"",
                 headers: tuple[bytes, ...] = ()) -> bytes:
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + self.host, b"Authorization: " + auth,
                 b"Content-Length: " + str(len(body)).encode(), *headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def create(self, customer: int) -> bytes:
        return self._request(b"POST", b"/api/v1/orders", self.auth[customer], self.create_body,
                             (b"Content-Type: application/json", b"Idempotency-Key: " + uuid.uuid4().hex.encode()))

    def upload(self, customer: int, order_id: str) -> bytes:
        return self._request(b"PUT", f"/api/v1/orders/{order_id}/model".encode(), self.auth[customer],
                             self.upload_body, (f"Content-Type: multipart/form-data; boundary={BOUNDARY}".encode(),))

    def submit(self, customer: int, order_id: str) -> bytes:
        return self._request(b"POST", f"/api/v1/orders/{order_id}/submit".encode(), self.auth[customer])


class Connections:
    """Keep-alive connections to one server; a connection serves one request at a time.

    As any HTTP client does, a request that fails on a *reused* connection before a single byte of
    answer came back (the server closed that idle connection meanwhile) is sent again once on a new
    connection; such retries are counted. A failure on a new connection is the server's.
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.stale_retries = 0

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        reused = self._reusable()
        if reused is not None:
            try:
                return await self._send(*reused, request)
            except (ConnectionResetError, BrokenPipeError):
                pass
            except asyncio.IncompleteReadError as error:
                if error.partial:
                    raise
            self.stale_retries += 1
        reader, writer = await asyncio.open_connection(*self.address)
        self.opened += 1
        return await self._send(reader, writer, request)

    async def _send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        try:
            writer.write(request)
            status, headers, body = await read_response(reader)
        except BaseException:
            writer.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, headers, body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers, body


class Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.requests = Requests(plan)
        self.connections = Connections(plan.host, plan.port)
        self.answers: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()  # "503 pricing_overloaded", "429 rate_limited", ...
        self.without_retry_after = 0
        self.accepted: list[str] = []
        self.max_late = 0.0

    async def attempt(self, index: int) -> None:
        """create -> upload -> submit; stops at the first answer that is not a success."""
        customer = index % len(self.requests.auth)
        order_id = ""
        for step in ("create", "upload", "submit"):
            if step == "create":
                request = self.requests.create(customer)
            elif step == "upload":
                request = self.requests.upload(customer, order_id)
            else:
                request = self.requests.submit(customer, order_id)
            try:
                status, headers, body = await asyncio.wait_for(self.connections.exchange(request), self.plan.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
                self.answers[type(error).__name__] += 1
                return
            self.answers[str(status)] += 1
            if status >= 300:
                self.refused(status, headers, body)
                return
            if step == "create":
                order_id = json.loads(body)["id"]
        self.accepted.append(order_id)

    def refused(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "unreadable"
        self.refusals[f"{status} {code}"] += 1
        if status in (429, 503) and not headers.get(b"retry-after", b"").isdigit():
            self.without_retry_after += 1

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        tasks: set[asyncio.Task[None]] = set()
        total = int(plan.rate * plan.duration)
        mine = range(plan.share, total, plan.shares)
        sent = not_sent = 0
        await asyncio.sleep(max(0.0, plan.start - time.time()))
        for index in mine:
            due = plan.start + index / plan.rate
            if (wait := due - time.time()) > 0:
                await asyncio.sleep(wait)
            else:
                self.max_late = max(self.max_late, -wait)
            if len(tasks) >= plan.max_open:
                not_sent += 1
                continue
            task = asyncio.create_task(self.attempt(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        offered_until = time.time()
        await asyncio.gather(*tasks)
        self.connections.close()
        return {"scheduled": len(mine), "sent": sent, "not_sent": not_sent, "answers": dict(self.answers),
                "refusals": dict(self.refusals), "without_retry_after": self.without_retry_after,
                "accepted": self.accepted, "max_late_s": round(self.max_late, 3),
                "offered_seconds": round(offered_until - plan.start, 2), "connections": self.connections.opened,
                "stale_connection_retries": self.connections.stale_retries}


def run(plan: Plan) -> dict[str, Any]:
    """Entry point of one generator process."""
    return asyncio.run(Generator(plan).run())


COUNTS = ("scheduled", "sent", "not_sent", "without_retry_after", "connections", "stale_connection_retries")


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for all generator processes: counts added, tallies merged, the worst lateness."""
    answers: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    for result in results:
        answers.update(result["answers"])
        refusals.update(result["refusals"])
    return {**{name: sum(r[name] for r in results) for name in COUNTS},
            "answers": dict(answers), "refusals": dict(refusals),
            "accepted": [order_id for r in results for order_id in r["accepted"]],
            "max_late_s": max(r["max_late_s"] for r in results),
            "offered_seconds": max(r["offered_seconds"] for r in results)}
