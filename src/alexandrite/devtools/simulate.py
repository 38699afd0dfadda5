"""Drive orders through the running platform over its HTTP APIs and report stage latencies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from alexandrite.contracts.alloys import ALLOY_NAMES
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token

PRICED = {"PRICE_CALCULATED", "PRICE_CALCULATION_FAILED"}


class PatientTransport(httpx.AsyncBaseTransport):
    """What a well-behaved client does: wait out 429/503 (``Retry-After``) and retry refused or dropped
    connections, for up to ``patience`` seconds. Safe here because every write the simulation sends is
    idempotent (orders carry an ``Idempotency-Key``; upload, submit and reads repeat harmlessly)."""

    RETRIED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError,
               httpx.WriteError)

    def __init__(self, patience: float = 120.0, max_wait: float = 5.0, **kwargs: Any) -> None:
        self.inner = httpx.AsyncHTTPTransport(**kwargs)
        self.patience = patience
        self.max_wait = max_wait
        self.retries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.patience
        delay = 0.2
        while True:
            try:
                response = await self.inner.handle_async_request(request)
            except self.RETRIED:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if response.status_code not in (429, 503) or time.monotonic() > deadline:
                return response
            header = response.headers.get("retry-after", "1")
            wait = min(float(header) if header.isdigit() else 1.0, self.max_wait)
            await response.aclose()
            self.retries += 1
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Outcome:
    order_id: str
    final_status: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def ring_model(rng: random.Random) -> bytes:
    from alexandrite.models3d.ring_sizes import inner_diameter_mm
    from alexandrite.models3d.rings import ring
    from alexandrite.models3d.writers import to_binary_stl

    size = rng.uniform(44, 70)
    triangles = ring(
        inner_diameter_mm=inner_diameter_mm(size),
        band_width_mm=rng.uniform(2.0, 8.0),
        thickness_mm=rng.uniform(1.2, 2.6),
        profile=rng.choice(["flat", "comfort", "d_shape"]),
        segments=rng.choice([48, 96, 192, 384, 768]),
        profile_segments=rng.choice([8, 16, 32]),
    )
    return to_binary_stl(triangles)


class Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.started = total, label, 0, time.monotonic()

    def step(self) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} {rate:.1f}/s")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _poll(client: httpx.AsyncClient, url: str, headers: dict[str, str], wanted: set[str],
                timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        response = await client.get(url, headers=headers)
        if response.status_code == 404 and time.monotonic() <= deadline:
            # Another service's view: it learns of the order from events, a moment after the shop did.
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            continue
        response.raise_for_status()
        body = response.json()
        if body["status"] in wanted:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"order stuck in {body['status']}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


async def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:200]}")
    return response.json()


async def drive_order(client: httpx.AsyncClient, settings: Settings, auth: dict[str, str],
                      staff: dict[str, dict[str, str]], model: bytes, alloy: str, close: bool,
                      timeout: float, by_carrier: bool = False) -> Outcome:
    shop, crm, mes = settings.net.shop_url, settings.net.crm_url, settings.net.mes_url
    order = await _check(await client.post(f"{shop}/api/v1/orders", json={"alloy": alloy},
                                           headers={**auth, "Idempotency-Key": uuid.uuid4().hex}))
    outcome = Outcome(order["id"])
    oid = order["id"]
    try:
        await _check(await client.put(f"{shop}/api/v1/orders/{oid}/model", headers=auth,
                                      files={"file": ("ring.stl", model, "model/stl")}))
        await _check(await client.post(f"{shop}/api/v1/orders/{oid}/submit", headers=auth))
        body = await _poll(client, f"{shop}/api/v1/orders/{oid}", auth, PRICED, timeout)
        if close and body["status"] == "PRICE_CALCULATED":
            await _poll(client, f"{crm}/api/v1/crm/orders/{oid}", staff["seller"], {"PRICE_CALCULATED"}, timeout)
            await _check(await client.post(f"{crm}/api/v1/crm/orders/{oid}/approve", headers=staff["seller"]))
            await _poll(client, f"{mes}/api/v1/production/orders/{oid}", staff["operator"],
                        {"MANUFACTURING_APPROVED"}, timeout)
            for action in ("take", "complete", "package"):
                await _check(await client.post(f"{mes}/api/v1/production/orders/{oid}/{action}",
                                               headers=staff["operator"]))
            await _check(await client.post(
                f"{mes}/api/v1/production/orders/{oid}/ship", headers=staff["operator"],
                json={"tracking_number": "TRK-" + oid[:8].upper(), "carrier": "simulated-post"}))
            await _poll(client, f"{crm}/api/v1/crm/orders/{oid}", staff["seller"], {"SHIPPED"}, timeout)
            if by_carrier:
                await _check(await carrier_delivered(client, settings, "TRK-" + oid[:8].upper()))
            else:
                await _check(await client.post(f"{crm}/api/v1/crm/orders/{oid}/close", headers=staff["seller"],
                                               json={"reason": "delivered"}))
            body = await _poll(client, f"{shop}/api/v1/orders/{oid}", auth, {"CLOSED"}, timeout)
        outcome.final_status = body["status"]
        outcome.history = body["history"]
    except Exception as error:  # reported per order, the run goes on
        outcome.error = f"{type(error).__name__}: {error}"
    return outcome


async def carrier_delivered(client: httpx.AsyncClient, settings: Settings, tracking: str) -> httpx.Response:
    body = json.dumps({"tracking_number": tracking, "event": "delivered",
                       "occurred_at": datetime.now(UTC).isoformat()}).encode()
    signature = hmac.new(settings.auth.carrier_webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    return await client.post(f"{settings.net.crm_url}/api/v1/crm/webhooks/carrier", content=body,
                             headers={"content-type": "application/json", "X-Carrier-Signature": f"sha256={signature}"})


def stage_latencies(outcomes: list[Outcome]) -> dict[str, list[float]]:
    stages: dict[str, list[float]] = {}
    for outcome in outcomes:
        history = outcome.history
        for before, after in zip(history, history[1:], strict=False):
            seconds = (datetime.fromisoformat(after["at"]) - datetime.fromisoformat(before["at"])).total_seconds()
            stages.setdefault(f"{before['status']} -> {after['status']}", []).append(seconds)
        statuses = [h["status"] for h in history]
        if "SUBMITTED" in statuses and "PRICE_CALCULATED" in statuses:
            at = {h["status"]: datetime.fromisoformat(h["at"]) for h in history}
            stages.setdefault("SUBMITTED => PRICE_CALCULATED (total)", []).append(
                (at["PRICE_CALCULATED"] - at["SUBMITTED"]).total_seconds())
    return stages


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(int(round(q / 100 * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


def format_report(outcomes: list[Outcome], elapsed: float) -> str:
    lines = []
    by_status: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome.final_status or "ERROR"
        by_status[key] = by_status.get(key, 0) + 1
    lines.append(f"orders: {len(outcomes)} in {elapsed:.1f} s ({len(outcomes) / max(elapsed, 1e-9):.1f}/s); "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
    lines.append(f"{'stage':58} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for stage, values in stage_latencies(outcomes).items():
        lines.append(f"{stage:58} {len(values):5d} " + " ".join(
            f"{percentile(values, q) * 1000:9.1f}" for q in (50, 95, 99, 100)))
    errors = [o for o in outcomes if o.error]
    for outcome in errors[:5]:
        lines.append(f"error {outcome.order_id}: {outcome.error}")
    if len(errors) > 5:
        lines.append(f"... {len(errors) - 5} more errors")
    return "\n".join(lines)


async def simulate(settings: Settings, orders: int, *, concurrency: int = 16, close: bool = False,
                   timeout: float = 300.0, seed: int | None = None) -> tuple[list[Outcome], float]:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency * 2)
    transport = PatientTransport(patience=timeout, limits=limits)
    async with httpx.AsyncClient(timeout=60, transport=transport) as client:
        email = f"sim-{uuid.uuid4().hex[:12]}@example.test"
        password = uuid.uuid4().hex
        await _check(await client.post(f"{settings.net.shop_url}/api/v1/auth/signup",
                                       json={"email": email, "password": password, "name": "Simulated Customer"}))
        token = (await _check(await client.post(f"{settings.net.shop_url}/api/v1/auth/token",
                                                json={"email": email, "password": password})))["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        staff = {
            role: {"Authorization": "Bearer " + issue_token(
                settings, Principal(role=role, subject=f"sim-{role}", name=f"sim-{role}"), 3600)}
            for role in ("seller", "operator")
        }
        models = [ring_model(rng) for _ in range(min(orders, 24))]
        progress = Progress(orders, "orders")
        semaphore = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def one(index: int) -> Outcome:
            async with semaphore:
                result = await drive_order(client, settings, auth, staff, models[index % len(models)],
                                           rng.choice(ALLOY_NAMES), close, timeout, by_carrier=index % 2 == 1)
                progress.step()
                return result

        outcomes = await asyncio.gather(*(one(i) for i in range(orders)))
        return list(outcomes), time.monotonic() - started
