"""Pricing workers: real models priced from storage, duplicates, cancels, a worker dying mid-job.

Real PostgreSQL, RabbitMQ and storage; orders arrive as the shop's events, jobs as the
messages production put in its outbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.mes import domain, handlers
from alexandrite.mes.consumers import handle_event
from alexandrite.mes.pricing import jobs
from alexandrite.mes.pricing.quote import load_pricing
from alexandrite.mes.progress import QueueEstimate
from alexandrite.mes.tables import order_history, pricing_jobs, production_orders
from alexandrite.mes.worker import PricingWorker, run_worker
from alexandrite.models3d.limits import ModelLimits
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box
from alexandrite.models3d.writers import to_binary_stl

S = OrderStatus


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("mes"), pool_size=3)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.uploads.storage_dir)


@pytest.fixture(scope="module")
def worker(db: Database, storage: LocalStorage, settings: Settings) -> PricingWorker:
    return PricingWorker(db=db, storage=storage, pricing=load_pricing(None), name="w-test",
                         limits=settings.uploads.limits)


def signed_volume(triangles: np.ndarray) -> float:
    v0, v1, v2 = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)


async def store(storage: LocalStorage, triangles: np.ndarray, filename: str = "ring.stl") -> dict[str, Any]:
    data = to_binary_stl(triangles)
    key, digest = LocalStorage.model_key(data, "stl")
    await storage.put(key, data)
    return {"key": key, "filename": filename, "format": "stl_binary", "triangles": int(len(triangles)),
            "bytes": len(data), "sha256": digest}


def delivery(body: bytes) -> Delivery:
    return Delivery(body=body, headers={"event_type": domain.JOB_MESSAGE_TYPE}, routing_key=PRICING_QUEUE,
                    message_id=None, attempt=0, redelivered=False)


async def submit(db: Database, model: dict[str, Any], alloy: str = "gold_585") -> tuple[uuid.UUID, bytes]:
    """The shop's INITIATED, FILE_UPLOADED, SUBMITTED: returns the order and its pricing job message."""
    order_id = uuid.uuid4()
    t0 = datetime.now(UTC)
    actor = "customer:cust-7"
    steps = [
        StatusChanged(status=S.INITIATED, actor=actor, at=t0, alloy=alloy, created_at=t0,
                      owner={"kind": "customer", "id": "cust-7", "name": "Ring Buyer"}),
        StatusChanged(status=S.FILE_UPLOADED, actor=actor, at=t0, model=model),
        StatusChanged(status=S.SUBMITTED, actor=actor, at=t0, model=model, alloy=alloy),
    ]
    for seq, change in enumerate(steps, start=1):
        envelope = status_envelope(producer="shop", order_id=order_id, seq=seq, change=change)
        outcome = await handle_event(db, Delivery(body=envelope.model_dump_json().encode(), headers={},
                                                  routing_key=envelope.type, message_id=None, attempt=0,
                                                  redelivered=False), QueueEstimate())
        assert outcome == "ok"
    async with db.sessions() as session:
        body = (await session.execute(
            select(OUTBOX.c.body).where(OUTBOX.c.order_id == order_id, OUTBOX.c.routing_key == PRICING_QUEUE)
        )).scalar_one()
    return order_id, body


async def state(db: Database, order_id: uuid.UUID) -> tuple[Any, list[Any], list[Any], list[Envelope]]:
    async with db.sessions() as session:
        order = (await session.execute(select(production_orders).where(production_orders.c.id == order_id))).one()
        jobs = list((await session.execute(
            select(pricing_jobs).where(pricing_jobs.c.order_id == order_id).order_by(pricing_jobs.c.submit_seq))).all())
        steps = list((await session.execute(
            select(order_history).where(order_history.c.order_id == order_id).order_by(order_history.c.seq))).all())
        bodies = (await session.execute(
            select(OUTBOX.c.body).where(OUTBOX.c.order_id == order_id, OUTBOX.c.exchange == EVENTS_EXCHANGE)
            .order_by(OUTBOX.c.id))).scalars()
        events = [Envelope.model_validate_json(b) for b in bodies]
    return order, jobs, steps, events


@pytest.fixture(scope="module")
def ring_triangles() -> np.ndarray:
    return np.asarray(ring(inner_diameter_mm=17.3, band_width_mm=4.0, thickness_mm=1.8, segments=96))


async def test_worker_prices_a_ring_from_storage(db: Database, storage: LocalStorage, worker: PricingWorker,
                                                 ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    assert await worker.handle(delivery(job)) == "priced"

    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "PRICE_CALCULATED" and order.seq == 5 and order.progress is None and order.failure is None
    quote = order.quote
    assert quote["volume_mm3"] == pytest.approx(signed_volume(ring_triangles), rel=1e-5)
    assert quote["total"] > 0 and quote["currency"] and quote["pricing_version"]
    assert quote["metal_mass_g"] > 0 and quote["surface_mm2"] > 0 and quote["breakdown"]
    assert (job_row.state, job_row.attempts, job_row.worker) == ("priced", 1, "w-test")
    assert job_row.duration_ms is not None and job_row.duration_ms >= 0
    assert job_row.started_at >= job_row.enqueued_at and job_row.finished_at >= job_row.started_at
    assert steps[-1].status == "PRICE_CALCULATED" and steps[-1].by == domain.worker_actor("w-test")
    [priced] = [e for e in events if e.type == "mes.order.price_calculated"]
    assert priced.seq == 5 and priced.payload["quote"] == quote
    assert priced.payload["previous_status"] == "PRICE_CALCULATING"


async def test_the_worker_parses_under_the_configured_limits_not_the_library_defaults(
        db: Database, storage: LocalStorage, settings: Settings, ring_triangles: np.ndarray) -> None:
    # The limits come from Settings (ALEX_MAX_TRIANGLES) as in the shop's upload check: with a limit below the
    # ring's triangle count the worker refuses it, although the library default (2M) would accept it.
    tight = settings.replace(max_triangles=len(ring_triangles) - 1)
    assert tight.uploads.limits.max_triangles < ModelLimits().max_triangles
    strict = PricingWorker(db=db, storage=storage, pricing=load_pricing(None), name="w-strict",
                           limits=tight.uploads.limits)
    order_id, job = await submit(db, await store(storage, ring_triangles))
    assert await strict.handle(delivery(job)) == "failed"
    order, *_ = await state(db, order_id)
    assert order.failure["code"] == "too_many_triangles"


async def test_an_open_mesh_fails_with_a_reason(db: Database, storage: LocalStorage, worker: PricingWorker) -> None:
    open_box = np.asarray(box(10.0, 8.0, 3.0))[2:]  # one face removed: not watertight
    order_id, job = await submit(db, await store(storage, open_box, "box.stl"))
    assert await worker.handle(delivery(job)) == "failed"
    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "PRICE_CALCULATION_FAILED" and order.quote is None and order.progress is None
    assert order.failure["code"] == "not_watertight" and order.failure["message"]
    assert job_row.state == "failed" and job_row.duration_ms is not None
    [failed] = [e for e in events if e.type == "mes.order.price_calculation_failed"]
    assert failed.payload["failure"] == order.failure and failed.seq == 5


async def test_a_duplicate_delivery_prices_once(db: Database, storage: LocalStorage, worker: PricingWorker,
                                                ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    before = REGISTRY.get_sample_value("alexandrite_mes_pricing_jobs_finished_total", {"outcome": "duplicate"}) or 0
    assert await worker.handle(delivery(job)) == "priced"
    assert await worker.handle(delivery(job)) == "duplicate"
    other = PricingWorker(db=db, storage=worker.storage, pricing=worker.pricing, name="w-other",
                          limits=worker.limits)
    assert await other.handle(delivery(job)) == "duplicate"
    order, [job_row], steps, events = await state(db, order_id)
    assert [s.status for s in steps].count("PRICE_CALCULATED") == 1
    assert [e.type for e in events].count("mes.order.price_calculated") == 1
    assert (job_row.attempts, job_row.worker) == (1, "w-test")
    after = REGISTRY.get_sample_value("alexandrite_mes_pricing_jobs_finished_total", {"outcome": "duplicate"})
    assert after == before + 2


async def test_a_job_left_running_by_a_dead_worker_is_priced_by_another(
        db: Database, storage: LocalStorage, worker: PricingWorker, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    crashed = await jobs.begin_job(db, message.job_id, worker="worker-dead")  # then SIGKILL
    assert isinstance(crashed, jobs.StartedJob)
    assert await worker.handle(delivery(job)) == "priced"  # the redelivery
    order, [job_row], steps, _ = await state(db, order_id)
    assert order.status == "PRICE_CALCULATED"
    assert (job_row.state, job_row.attempts, job_row.worker) == ("priced", 2, "w-test")
    # Had the first worker survived after all, its completion would change nothing.
    late = await jobs.finish_job(db, crashed, worker="worker-dead", duration_ms=1, quote={"total": 1})
    assert late == "duplicate"
    order_after, _, steps_after, _ = await state(db, order_id)
    assert order_after.quote == order.quote and len(steps_after) == len(steps)


async def test_an_order_cancelled_while_being_priced_gets_no_price(
        db: Database, storage: LocalStorage, worker: PricingWorker, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    started = await jobs.begin_job(db, message.job_id, worker="w-test")
    assert isinstance(started, jobs.StartedJob)
    await handlers.cancel(db, order_id, requested_by="shop", actor="customer:cust-7", reason=None)
    assert await jobs.finish_job(db, started, worker="w-test", duration_ms=3, quote={"total": 1}) == "cancelled"
    assert await worker.handle(delivery(job)) == "cancelled"
    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "CANCELLED" and order.quote is None and job_row.state == "cancelled"
    assert job_row.duration_ms is None  # only priced and failed jobs have one: the queue's average reads no other
    assert [e.type for e in events] == ["mes.order.price_calculating", "mes.order.cancelled"]


async def test_bad_job_messages_are_dead_lettered(worker: PricingWorker) -> None:
    with pytest.raises(PermanentError):
        await worker.handle(delivery(b"not json"))
    with pytest.raises(PermanentError):
        await worker.handle(delivery(b'{"job_id": "x"}'))
    unknown = domain.PricingJobMessage(job_id=uuid.uuid4(), order_id=uuid.uuid4(), submit_seq=3,
                                       enqueued_at=datetime.now(UTC))
    with pytest.raises(PermanentError):
        await worker.handle(delivery(unknown.model_dump_json().encode()))


async def test_a_missing_model_file_is_retried_and_the_job_requeued(db: Database, worker: PricingWorker) -> None:
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    model = {"key": f"models/{digest[:2]}/{digest}.stl", "filename": "gone.stl", "format": "stl_binary",
             "triangles": 12, "bytes": 684, "sha256": digest}
    order_id, job = await submit(db, model)
    with pytest.raises(FileNotFoundError):  # not permanent: the consumer retries with backoff
        await worker.handle(delivery(job))
    order, [job_row], _, _ = await state(db, order_id)
    assert order.status == "PRICE_CALCULATING"
    assert (job_row.state, job_row.attempts) == ("queued", 1)


# --- the worker process, against the real queue -----------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def test_run_worker_takes_over_a_job_whose_worker_died(
        db: Database, storage: LocalStorage, settings: Settings, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    connection = await aio_pika.connect(settings.broker.url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(PRICING_QUEUE, ensure=True)
        await queue.purge()
        await channel.default_exchange.publish(
            aio_pika.Message(job, message_id=str(message.job_id), headers={"event_type": domain.JOB_MESSAGE_TYPE},
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=PRICING_QUEUE)

        # A worker takes the job, marks it running, and dies before acknowledging it.
        doomed = await aio_pika.connect(settings.broker.url)
        doomed_channel = await doomed.channel()
        await doomed_channel.set_qos(prefetch_count=1)
        taken = await (await doomed_channel.get_queue(PRICING_QUEUE)).get(no_ack=False, timeout=10)
        assert taken is not None and taken.body == job
        assert isinstance(await jobs.begin_job(db, message.job_id, worker="worker-1"), jobs.StartedJob)
        await doomed.close()  # unacknowledged: back to the queue

        stop = asyncio.Event()
        port = free_port()
        task = asyncio.create_task(run_worker(settings, stop, metrics_port=port, worker_name="worker-2"))
        try:
            async def priced() -> bool:
                order, _, _, _ = await state(db, order_id)
                return order.status == "PRICE_CALCULATED"

            await wait_for(priced)
            order, [job_row], steps, _ = await state(db, order_id)
            assert (job_row.state, job_row.attempts, job_row.worker) == ("priced", 2, "worker-2")
            assert [s.status for s in steps].count("PRICE_CALCULATED") == 1

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                live = await http.get("/health/live")
                assert live.status_code == 200 and live.json() == {"status": "ok"}
                assert (await http.get("/health/ready")).status_code == 200
                exposed = (await http.get("/metrics")).text
                assert "alexandrite_pricing_duration_seconds_bucket" in exposed
                assert "alexandrite_pricing_queue_wait_seconds" in exposed
                assert (await http.get("/nope")).status_code == 404

            async def acknowledged() -> bool:
                declared = await channel.declare_queue(PRICING_QUEUE, passive=True)
                return declared.declaration_result.message_count == 0

            await wait_for(acknowledged)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        assert task.done() and task.exception() is None
        with pytest.raises(httpx.ConnectError):  # the side port is closed with the worker
            async with httpx.AsyncClient(timeout=2) as http:
                await http.get(f"http://127.0.0.1:{port}/health/live")
    finally:
        await connection.close()


async def test_an_unknown_alloy_fails_the_order_instead_of_retrying(
        db: Database, storage: LocalStorage, worker: PricingWorker, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles), alloy="unobtainium")
    assert await worker.handle(delivery(job)) == "failed"
    order, [job_row], _, _ = await state(db, order_id)
    assert order.status == "PRICE_CALCULATION_FAILED" and order.failure["code"] == "unknown_alloy"
    assert job_row.state == "failed"


async def test_the_worker_process_stops_cleanly_on_sigterm(test_env: dict[str, str]) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alexandrite.mes.worker", "--name", "worker-sigterm", "--metrics-port", str(port),
        env=test_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            async def ready() -> bool:
                try:
                    return (await http.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(ready, timeout=30)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    logged = output.decode(errors="replace")
    assert "pricing_worker_started" in logged and "pricing_worker_stopped" in logged


# --- one-statement begin and finish: concurrent duplicates, a cancel mid-pricing, a stale order -----

async def test_two_workers_given_the_same_job_at_once_price_it_once(
        db: Database, storage: LocalStorage, worker: PricingWorker, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    other = PricingWorker(db=db, storage=storage, pricing=worker.pricing, name="w-twin", limits=worker.limits)
    outcomes = await asyncio.gather(worker.handle(delivery(job)), other.handle(delivery(job)),
                                    worker.handle(delivery(job)))
    assert outcomes.count("priced") == 1 and set(outcomes) <= {"priced", "duplicate"}
    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "PRICE_CALCULATED" and order.seq == 5
    assert [s.status for s in steps].count("PRICE_CALCULATED") == 1
    assert [e.type for e in events] == ["mes.order.price_calculating", "mes.order.price_calculated"]
    assert job_row.state == "priced" and job_row.worker in ("w-test", "w-twin")


async def test_a_cancel_while_the_model_is_being_priced_leaves_no_price(
        db: Database, storage: LocalStorage, worker: PricingWorker, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    mine = PricingWorker(db=db, storage=storage, pricing=worker.pricing, name="w-slow", limits=worker.limits)
    await mine.pricing_slot.acquire()  # the job begins, then waits for its turn to price
    handling = asyncio.create_task(mine.handle(delivery(job)))

    async def running() -> bool:
        _, [row], _, _ = await state(db, order_id)
        return bool(row.state == "running")

    await wait_for(running)
    await handlers.cancel(db, order_id, requested_by="shop", actor="customer:cust-7", reason="changed my mind")
    mine.pricing_slot.release()
    assert await handling == "cancelled"
    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "CANCELLED" and order.quote is None and order.seq == 5
    assert (job_row.state, job_row.attempts, job_row.duration_ms) == ("cancelled", 1, None)
    assert [s.status for s in steps][-2:] == ["PRICE_CALCULATING", "CANCELLED"]
    assert [e.type for e in events] == ["mes.order.price_calculating", "mes.order.cancelled"]
    assert await worker.handle(delivery(job)) == "cancelled"  # the message redelivered: nothing more


async def test_a_finish_expecting_an_older_order_reads_it_again_and_prices_once(
        db: Database, storage: LocalStorage, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    started = await jobs.begin_job(db, message.job_id, worker="w-test")
    assert isinstance(started, jobs.StartedJob) and started.order_seq == 4
    stale = dataclasses.replace(started, order_seq=3)  # as if the order had changed since the job began
    assert await jobs.finish_job(db, stale, worker="w-test", duration_ms=7, quote={"total": 12.5}) == "priced"
    order, [job_row], steps, events = await state(db, order_id)
    assert order.status == "PRICE_CALCULATED" and order.seq == 5 and order.quote == {"total": 12.5}
    assert (job_row.state, job_row.duration_ms, job_row.worker) == ("priced", 7, "w-test")
    assert [(s.seq, s.status, s.previous_status) for s in steps][-1] == (5, "PRICE_CALCULATED", "PRICE_CALCULATING")
    [priced] = [e for e in events if e.type == "mes.order.price_calculated"]
    assert priced.seq == 5 and priced.payload["quote"] == {"total": 12.5}
    assert await jobs.finish_job(db, started, worker="w-test", duration_ms=7, quote={"total": 1}) == "duplicate"


async def test_a_job_whose_order_has_no_model_is_refused_and_left_queued(
        db: Database, storage: LocalStorage, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    async with db.sessions() as session:  # a state no handler makes, to reach the guard
        await session.execute(update(production_orders).where(production_orders.c.id == order_id)
                              .values(model=None))
        await session.commit()
    with pytest.raises(ValueError, match="no model or alloy"):
        await jobs.begin_job(db, message.job_id, worker="w-test")
    _, [job_row], _, _ = await state(db, order_id)
    assert (job_row.state, job_row.attempts, job_row.started_at) == ("queued", 0, None)


async def test_a_job_whose_order_left_pricing_without_it_is_cancelled_on_begin(
        db: Database, storage: LocalStorage, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    async with db.sessions() as session:  # a state no handler makes, to reach the guard
        await session.execute(update(production_orders).where(production_orders.c.id == order_id)
                              .values(status="SUBMITTED"))
        await session.commit()
    assert await jobs.begin_job(db, message.job_id, worker="w-test") == "cancelled"
    _, [job_row], _, events = await state(db, order_id)
    assert job_row.state == "cancelled" and job_row.finished_at is not None and job_row.attempts == 0
    assert [e.type for e in events] == ["mes.order.price_calculating"]


async def test_status_listeners_hear_of_a_price_once_and_never_of_a_duplicate(
        db: Database, storage: LocalStorage, ring_triangles: np.ndarray) -> None:
    order_id, job = await submit(db, await store(storage, ring_triangles))
    message = domain.PricingJobMessage.model_validate_json(job)
    heard: list[tuple[str | None, str]] = []
    listener = lambda previous, status: heard.append((previous, status))  # noqa: E731
    db.status_listeners.append(listener)
    try:
        first = await jobs.begin_job(db, message.job_id, worker="w-test")
        second = await jobs.begin_job(db, message.job_id, worker="w-again")  # a redelivery while it runs
        assert isinstance(first, jobs.StartedJob) and isinstance(second, jobs.StartedJob)
        assert await jobs.finish_job(db, second, worker="w-again", duration_ms=4, quote={"total": 2}) == "priced"
        assert await jobs.finish_job(db, first, worker="w-test", duration_ms=5, quote={"total": 3}) == "duplicate"
    finally:
        db.status_listeners.remove(listener)
    assert heard == [("PRICE_CALCULATING", "PRICE_CALCULATED")]
    order, [job_row], steps, events = await state(db, order_id)
    assert order.quote == {"total": 2} and (job_row.attempts, job_row.worker) == (2, "w-again")
    assert [e.type for e in events].count("mes.order.price_calculated") == 1
