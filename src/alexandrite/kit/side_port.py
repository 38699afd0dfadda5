"""``/metrics`` and ``/health/*`` on a side port, for processes that serve no HTTP API (pricing workers,
the watchdog): a small threaded WSGI server, stopped with :meth:`SidePortServer.close`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def health_app(ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    """WSGI app: ``/metrics`` (Prometheus text), ``/health/live``, ``/health/ready`` (consuming)."""
    prometheus = make_wsgi_app()

    def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return prometheus(environ, start_response)
        if path == "/health/live":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/health/ready":
            ok = ready()
            return _json(start_response, "200 OK" if ok else "503 Service Unavailable",
                         {"status": "ok" if ok else "unavailable",
                          "checks": {"rabbitmq": "ok" if ok else "not consuming"}})
        return _json(start_response, "404 Not Found", {"error": {"code": "not_found", "message": "No such path."}})

    return app


class SidePortServer:
    """A small threaded HTTP server for the worker's metrics and health, stopped with :meth:`close`."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._server = make_server(host, port, health_app(ready), server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="side-port", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
