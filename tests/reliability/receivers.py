"""Real local HTTP servers standing in for partner webhook endpoints (one thread each)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``mode``: "ok" (204), "fail" (500) or "hang" (holds the request ``hang_seconds``)."""

    mode: str = "ok"
    hang_seconds: float = 30.0
    received: list[Received] = field(default_factory=list)
    hits: int = 0
    open_requests: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.hits += 1
                    receiver.open_requests += 1
                try:
                    if receiver.mode == "hang":
                        time.sleep(receiver.hang_seconds)
                    status = 500 if receiver.mode == "fail" else 204
                    if status == 204:
                        with receiver._lock:
                            receiver.received.append(Received(dict(self.headers.items()), body, time.monotonic()))
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass
                finally:
                    with receiver._lock:
                        receiver.open_requests -= 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
