"""X-Forwarded-For is believed only from configured proxies (a spoofed header gave a fresh limit bucket)."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from alexandrite.cli.run import server_options
from alexandrite.kit.settings import Settings


async def _client_seen(settings: Settings, peer: str) -> str:
    seen: dict[str, Any] = {}

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["client"] = scope["client"][0]

    options = server_options(settings, argparse.Namespace(service="shop", port=None, host=None))
    options.pop("factory")
    config = uvicorn.Config(echo, **options)
    config.load()
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/api/v1/orders", "scheme": "http",
             "client": (peer, 50000), "server": ("127.0.0.1", 8001), "query_string": b"", "root_path": "",
             "headers": [(b"x-forwarded-for", b"203.0.113.66")]}
    await config.loaded_app(scope, None, None)
    return str(seen["client"])


async def test_spoofed_x_forwarded_for_from_loopback_is_ignored_by_default(settings: Settings) -> None:
    """`X-Forwarded-For: 203.0.113.66` sent straight from 127.0.0.1 used to become the client address."""
    assert await _client_seen(settings.replace(trusted_proxies=""), "127.0.0.1") == "127.0.0.1"


async def test_x_forwarded_for_from_a_configured_proxy_is_believed(settings: Settings) -> None:
    local = settings.replace(trusted_proxies="10.0.0.5")
    assert await _client_seen(local, "10.0.0.5") == "203.0.113.66"
    assert await _client_seen(local, "127.0.0.1") == "127.0.0.1"
