"""Builds a service's FastAPI app: lifespan (db, storage, relay, consumer), health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alexandrite.kit.auth import unguarded_routes
from alexandrite.kit.body_limit import install_body_limit
from alexandrite.kit.breaker import breaker_from_settings
from alexandrite.kit.db import Database
from alexandrite.kit.errors import install_error_handlers
from alexandrite.kit.graphite import run_graphite_push
from alexandrite.kit.http import ObservabilityMiddleware
from alexandrite.kit.live.wiring import Live
from alexandrite.kit.logs import configure_logging
from alexandrite.kit.messaging.consumer import Consumer, Delivery
from alexandrite.kit.messaging.relay import OutboxRelay
from alexandrite.kit.messaging.topology import events_queue, setup_topology
from alexandrite.kit.openapi import operation_id
from alexandrite.kit.peers import Peers
from alexandrite.kit.probes import metrics_response, ready_response
from alexandrite.kit.redis_clients import redis_client
from alexandrite.kit.settings import Service, Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.kit.throttle import LoadShedMiddleware, RateLimiter, ThrottleMiddleware
from alexandrite.kit.tracing import configure_tracing, instrument_app, shutdown_tracing

log = structlog.get_logger(__name__)

EventHandlerFactory = Callable[[FastAPI], Callable[[Delivery], Awaitable[str | None]]]
# A service's own background loop (status gauge, SLA watchdog, notifier): runs until the event is set.
BackgroundLoop = Callable[[FastAPI, asyncio.Event], Coroutine[Any, Any, None]]


def create_service_app(
    service: Service,
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    event_handler: EventHandlerFactory | None = None,
    title: str | None = None,
    on_startup: Callable[[FastAPI], Awaitable[None]] | None = None,
    loops: Sequence[BackgroundLoop] = (),
) -> FastAPI:
    configure_tracing(service, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(service, level=settings.obs.log_level, json_output=settings.obs.log_json)
        unguarded = unguarded_routes(app.routes)
        if unguarded:  # default deny: a route without a role requirement or a public reason never serves
            raise RuntimeError(f"routes without a role requirement: {', '.join(unguarded)}")
        app.state.settings = settings
        app.state.service = service
        app.state.db = Database(
            settings.database_url(service), pool_size=settings.db.pool_size,
            replica_url=settings.database_url(service, replica=True) if settings.db.replica_dsn else None,
            socket_dir=settings.db.socket_dir, idle_in_transaction_seconds=settings.db.idle_in_transaction_seconds,
        )
        app.state.storage = LocalStorage(
            settings.uploads.storage_dir, breaker=breaker_from_settings("storage", settings,
                                                                timeout=settings.uploads.storage_timeout_seconds))
        app.state.peers = Peers(settings)
        app.state.redis = redis_client(settings)
        app.state.rate_limiter = (
            RateLimiter(app.state.redis, settings.redis.prefix, settings.throttle.window_seconds,
                        breaker_from_settings("redis", settings, timeout=settings.redis.timeout_seconds))
            if settings.throttle.enabled else None
        )
        app.state.ready = False
        stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        app.state.consumer = None
        try:
            await setup_topology(settings)
        except Exception as error:  # the relay and consumer keep retrying; readiness tells
            log.warning("topology_setup_failed", error=repr(error)[:300])
        if on_startup is not None:
            await on_startup(app)
        if settings.broker.run_relay:
            relay = OutboxRelay(app.state.db, settings.broker.url, service=service,
                                batch_size=settings.broker.relay_batch_size,
                                idle_seconds=settings.broker.relay_idle_seconds,
                                listen=settings.broker.relay_listen,
                                gather_seconds=settings.broker.relay_gather_ms / 1000,
                                gauge_seconds=settings.broker.relay_gauge_seconds,
                                breaker=breaker_from_settings(f"rabbitmq-publish:{service}", settings))
            tasks.append(asyncio.create_task(relay.run(stop), name=f"{service}-relay"))
        if settings.broker.run_consumer and event_handler is not None:
            consumer = Consumer(settings.broker.url, events_queue(service), event_handler(app),
                                # No more handlers at once than the pool has connections: past that, every
                                # event would open (and close) an overflow connection of its own. More events
                                # in hand than that: an event whose ack is held keeps only its prefetch slot.
                                prefetch=max(settings.broker.consumer_prefetch, settings.db.pool_size),
                                concurrency=settings.db.pool_size,
                                retry_delays_ms=settings.broker.retry_delays_ms,
                                ack_hold_seconds=settings.broker.consumer_ack_hold_ms / 1000)
            app.state.consumer = consumer
            tasks.append(asyncio.create_task(consumer.run(stop), name=f"{service}-consumer"))
        app.state.live = None
        if settings.live.enabled:
            app.state.live = Live(settings, service, app.state.db, app.state.redis)
            tasks.append(asyncio.create_task(app.state.live.run(stop), name=f"{service}-live"))
        for loop in loops:
            tasks.append(asyncio.create_task(loop(app, stop), name=f"{service}-{getattr(loop, '__name__', 'loop')}"))
        if settings.obs.graphite_address:
            tasks.append(asyncio.create_task(run_graphite_push(settings, service, stop), name=f"{service}-graphite"))
        app.state.ready = True
        log.info("service_started", port=settings.service_port(service))
        try:
            yield
        finally:
            app.state.ready = False
            stop.set()
            if tasks:
                await asyncio.wait(tasks, timeout=30)
            shutdown_tracing()
            await app.state.peers.close()
            with contextlib.suppress(Exception):
                await app.state.redis.aclose()
            await app.state.db.dispose()
            log.info("service_stopped")

    app = FastAPI(title=title or f"Alexandrite {service}", version="1.0.0", lifespan=lifespan,
                  generate_unique_id_function=operation_id)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready(request: Request) -> JSONResponse:
        return await ready_response(request)  # cached ~1 s; details for the metrics token only

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        return metrics_response(request)  # Authorization: Bearer <ALEX_METRICS_TOKEN>

    install_body_limit(app, settings)  # innermost of these: a request refused by the limiter is never read
    app.add_middleware(ThrottleMiddleware, service=service)
    app.add_middleware(LoadShedMiddleware, service=service, max_in_flight=settings.throttle.max_in_flight_requests)
    app.add_middleware(ObservabilityMiddleware, service=service)
    instrument_app(app)
    return app

