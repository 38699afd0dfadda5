"""Partner webhooks cannot be pointed at the platform or its network (server-side request forgery).

Registration refuses non-public targets in every spelling; delivery resolves the name again and connects
only to the address it checked; the deliveries listing tells a partner the status code its endpoint
answered or "unreachable", nothing that maps internal ports.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.kit.db import Database
from alexandrite.kit.egress import EgressPolicy, PinnedTransport, RefusedUrl, blocked
from alexandrite.kit.settings import Settings
from alexandrite.shop.app import create_app
from alexandrite.shop.handlers import create_partner

PUBLIC_ADDRESS = "93.184.216.34"  # a global unicast address; nothing here ever connects to it

# Every spelling of an internal target the platform must refuse at registration.
REFUSED = [
    "http://127.0.0.1:5432/", "https://127.0.0.1:5432/", "https://127.0.0.1:6379/", "https://[::1]:8003/",
    "https://localhost:8002/", "https://localhost/", "https://10.0.0.1/", "https://172.16.5.4/",
    "https://192.168.1.1/", "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/",
    "https://0.0.0.0/", "https://224.0.0.1/", "https://127.1/", "https://2130706433/", "https://0177.0.0.1/",
    "https://0x7f.0.0.1/", "https://017700000001/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/",
    "https://[::ffff:10.0.0.1]/", "https://[fd00::1]/", "https://[fe80::1]/", "https://[ff02::1]/",
    "https://[64:ff9b::a00:1]/", "https://[2002:7f00:1::1]/", "https://[::]/",
    "https://user:pass@partner.example/", "https://user@partner.example/", "https://metadata.internal/",
    "https://printer.local/", "https://intranet/", "http://partner.example/hooks", "ftp://partner.example/",
    "https://partner.example\\@127.0.0.1/", "https://partner.example /x",
]


def _policy(settings: Settings, **overrides: object) -> EgressPolicy:
    return EgressPolicy.for_webhooks(settings.replace(**overrides))


@pytest.mark.parametrize("url", REFUSED)
def test_registration_refuses_internal_targets_in_every_spelling(settings: Settings, url: str) -> None:
    with pytest.raises(RefusedUrl):
        _policy(settings, webhook_allow_private_urls=False).check_url(url)


@pytest.mark.parametrize("url", ["https://partner.example/hooks", f"https://{PUBLIC_ADDRESS}:8443/h",
                                 "https://[2606:2800:220:1:248:1893:25c8:1946]/h"])
def test_public_https_targets_are_accepted(settings: Settings, url: str) -> None:
    assert _policy(settings, webhook_allow_private_urls=False).check_url(url).startswith("https://")


def test_the_development_setting_allows_local_receivers_but_never_the_platform(settings: Settings) -> None:
    dev = _policy(settings, webhook_allow_private_urls=True)
    assert dev.check_url("http://127.0.0.1:45678/hooks") == "http://127.0.0.1:45678/hooks"
    for own in ("http://127.0.0.1:5432/", "http://127.0.0.1:6379/", "http://127.0.0.1:5672/",
                f"http://127.0.0.1:{settings.net.shop_port}/", f"http://localhost:{settings.net.crm_port}/",
                f"http://[::1]:{settings.net.mes_port}/", "http://127.1:5432/", "http://user:pw@127.0.0.1:45678/"):
        with pytest.raises(RefusedUrl):
            dev.check_url(own)


def test_production_refuses_the_development_setting() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="WEBHOOK_ALLOW_PRIVATE_URLS"):
        Settings(environment="production", secret_key="k" * 40, service_token="t" * 40,  # type: ignore[call-arg]
                 carrier_webhook_secret="c" * 40, metrics_token="m" * 40, webhook_allow_private_urls=True,
                 _env_file=None)


def test_the_default_refuses_private_targets() -> None:
    assert Settings(_env_file=None).webhooks.allow_private_urls is False  # type: ignore[call-arg]


# --- delivery time: resolved again, pinned -------------------------------------------------------


class Resolver:
    """A name server the test controls: name -> addresses; remembers what it was asked."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return list(self.answers[host])


class TcpCounter:
    """A TCP listener on 127.0.0.1 that counts connections and closes them (stands in for an internal port)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


class HttpReceiver:
    """A local HTTP endpoint answering every POST with ``status`` (and ``location`` for redirects)."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        receiver = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hits += 1
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_name_resolving_to_loopback_is_never_connected_to(settings: Settings) -> None:
    counter = TcpCounter()
    resolver = Resolver({"rebind.partner.test": ["127.0.0.1"], "mixed.partner.test": [PUBLIC_ADDRESS, "10.1.2.3"]})
    policy = EgressPolicy.for_webhooks(settings.replace(webhook_allow_private_urls=False), resolver)
    try:
        async with httpx.AsyncClient(transport=PinnedTransport(policy)) as client:
            for url in (f"http://rebind.partner.test:{counter.port}/h", f"http://mixed.partner.test:{counter.port}/h",
                        f"http://127.0.0.1:{counter.port}/h", f"http://[::ffff:127.0.0.1]:{counter.port}/h"):
                with pytest.raises(httpx.ConnectError) as raised:
                    await client.post(url, content=b"{}")
                assert blocked(raised.value), url
        assert counter.accepted == 0
        assert resolver.asked == ["rebind.partner.test", "mixed.partner.test"]  # resolved at connect time
    finally:
        counter.close()


async def test_the_connection_goes_to_the_address_that_was_checked(settings: Settings) -> None:
    """The name is resolved once, by the policy; the socket is opened to that answer (no second lookup)."""
    receiver = HttpReceiver()
    resolver = Resolver({"receiver.partner.test": ["127.0.0.1"]})
    policy = EgressPolicy.for_webhooks(settings.replace(webhook_allow_private_urls=True), resolver)
    try:
        async with httpx.AsyncClient(transport=PinnedTransport(policy)) as client:
            response = await client.post(f"http://receiver.partner.test:{receiver.port}/hooks", content=b"{}")
        assert response.status_code == 204 and receiver.hits == 1  # "receiver.partner.test" exists in no DNS
        assert resolver.asked == ["receiver.partner.test"]
    finally:
        receiver.close()


async def test_platform_ports_are_refused_at_delivery_even_in_development(settings: Settings) -> None:
    policy = EgressPolicy.for_webhooks(settings.replace(webhook_allow_private_urls=True),
                                       Resolver({"db.partner.test": ["127.0.0.1"]}))
    async with httpx.AsyncClient(transport=PinnedTransport(policy)) as client:
        for url in ("http://db.partner.test:5432/", "http://127.0.0.1:6379/", "http://localhost:5672/"):
            with pytest.raises(httpx.ConnectError) as raised:
                await client.post(url, content=b"{}")
            assert blocked(raised.value), url


# --- through the shop: registration, dispatcher, listing ----------------------------------------


@asynccontextmanager
async def shop(settings: Settings, resolver: Resolver | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    if resolver is not None:
        app.state.webhook_resolver = resolver
    async with LifespanManager(app, shutdown_timeout=30):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


def _local(settings: Settings, *, dev: bool) -> Settings:
    return settings.replace(run_relay=False, run_consumer=False, webhook_idle_seconds=0.05,
                            webhook_backoff_seconds=(30.0,), webhook_timeout_seconds=3.0,
                            webhook_breaker_failures=100, webhook_allow_private_urls=dev,
                            redis_prefix=f"{settings.redis.prefix}:ssrf-{uuid.uuid4().hex[:6]}")


async def _partner(settings: Settings) -> dict[str, str]:
    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        return {"X-API-Key": await create_partner(db, f"ssrf-{uuid.uuid4().hex[:8]}")}
    finally:
        await db.dispose()


async def _wait(check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_the_api_refuses_internal_targets(settings: Settings) -> None:
    resolver = Resolver({"loopback.partner.test": ["127.0.0.1"], "v6.partner.test": ["::1"],
                         "meta.partner.test": ["169.254.169.254"], "ok.partner.test": [PUBLIC_ADDRESS]})
    local = _local(settings, dev=False)
    async with shop(local, resolver) as client:
        headers = await _partner(local)
        for url in [*REFUSED, "https://loopback.partner.test/h", "https://v6.partner.test/h",
                    "https://meta.partner.test/h"]:
            response = await client.put("/api/v1/webhook", headers=headers, json={"url": url})
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["code"] in ("invalid_webhook_url", "invalid_request"), url
        assert (await client.get("/api/v1/webhook", headers=headers)).json()["url"] is None
        ok = await client.put("/api/v1/webhook", headers=headers, json={"url": "https://ok.partner.test/h"})
        assert ok.status_code == 200 and ok.json()["url"] == "https://ok.partner.test/h"


def test_partner_create_applies_the_same_checks(test_env: dict[str, str]) -> None:
    import subprocess
    import sys

    for url in ("http://127.0.0.1:5432/", "https://localhost:6379/", "https://2130706433/",
                "https://user:pass@partner.example/"):
        created = subprocess.run([sys.executable, "-m", "alexandrite", "partner", "create",
                                  f"ssrf-cli-{uuid.uuid4().hex[:6]}", "--webhook-url", url], env=test_env,
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 2 and "webhook URL" in created.stderr, (url, created.stderr)


async def test_a_name_rebound_to_loopback_after_registration_is_refused_at_delivery(settings: Settings) -> None:
    counter = TcpCounter()
    resolver = Resolver({"rebind.partner.test": [PUBLIC_ADDRESS]})
    local = _local(settings, dev=False)
    try:
        async with shop(local, resolver) as client:
            headers = await _partner(local)
            url = f"https://rebind.partner.test:{counter.port}/hooks"
            assert (await client.put("/api/v1/webhook", headers=headers, json={"url": url})).status_code == 200
            resolver.answers["rebind.partner.test"] = ["127.0.0.1"]  # the name server changes its answer
            assert (await client.post("/api/v1/orders", headers=headers, json={"alloy": "gold_585"})).status_code == 201

            async def attempted() -> bool:
                items = (await client.get("/api/v1/webhook/deliveries", headers=headers)).json()["items"]
                return bool(items) and items[0]["attempts"] >= 1

            await _wait(attempted)
            item = (await client.get("/api/v1/webhook/deliveries", headers=headers)).json()["items"][0]
            assert (item["last_status"], item["last_error"]) == (None, "unreachable")
            assert counter.accepted == 0 and "rebind.partner.test" in resolver.asked
    finally:
        counter.close()


async def test_the_listing_is_not_a_port_scanner_and_redirects_are_not_followed(settings: Settings) -> None:
    """Closed port, open non-HTTP port, a 405 and a redirect: only the endpoint's status or one word."""
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    open_tcp = TcpCounter()
    target = HttpReceiver()
    redirecting = HttpReceiver(302, location=target.url)
    not_allowed = HttpReceiver(405)
    local = _local(settings, dev=True)
    try:
        async with shop(local) as client:
            seen: dict[str, dict[str, object]] = {}
            for name, url in (("closed", f"http://127.0.0.1:{closed_port}/h"),
                              ("open_tcp", f"http://127.0.0.1:{open_tcp.port}/h"),
                              ("redirect", redirecting.url), ("405", not_allowed.url)):
                headers = await _partner(local)
                assert (await client.put("/api/v1/webhook", headers=headers, json={"url": url})).status_code == 200
                assert (await client.post("/api/v1/orders", headers=headers,
                                          json={"alloy": "gold_585"})).status_code == 201

                async def attempted(headers: dict[str, str] = headers) -> bool:
                    items = (await client.get("/api/v1/webhook/deliveries", headers=headers)).json()["items"]
                    return bool(items) and items[0]["attempts"] >= 1

                await _wait(attempted)
                seen[name] = (await client.get("/api/v1/webhook/deliveries", headers=headers)).json()["items"][0]
        assert (seen["closed"]["last_status"], seen["closed"]["last_error"]) == (None, "unreachable")
        assert (seen["open_tcp"]["last_status"], seen["open_tcp"]["last_error"]) == (None, "unreachable")
        assert (seen["405"]["last_status"], seen["405"]["last_error"]) == (405, None)
        assert (seen["redirect"]["last_status"], seen["redirect"]["last_error"]) == (302, None)
        assert redirecting.hits == 1 and target.hits == 0  # the Location was not followed
        assert all(item["state"] == "pending" for item in seen.values())  # retried later, not delivered
    finally:
        for server in (open_tcp, target, redirecting, not_allowed):
            server.close()
