"""MES projection built from the shop's and CRM's events; SUBMITTED queues a pricing job.

Real PostgreSQL (the run's own mes database); the handler is called with deliveries as the
kit consumer would call it.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select, text

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, OutgoingMessage, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.messaging.topology import PRICING_QUEUE, dead_letter_queue
from alexandrite.kit.settings import Settings
from alexandrite.kit.tracing import use_provider
from alexandrite.mes import domain, repository
from alexandrite.mes.consumers import CANNOT_APPLY, handle_event
from alexandrite.mes.domain import PRODUCERS, SERVICE
from alexandrite.mes.handlers import apply_event
from alexandrite.mes.partitions import month_start, partition_name
from alexandrite.mes.pricing import jobs as job_steps
from alexandrite.mes.progress import QueueEstimate
from alexandrite.mes.tables import inbox, order_history, pricing_jobs, production_orders
from alexandrite.orders.events import consume_order_event
from alexandrite.orders.records import Transition, record_next_transition

S = OrderStatus
ESTIMATE = QueueEstimate(consumers=2, default_seconds=3.0)
MODEL = {"key": "models/ab/abc.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 1280,
         "bytes": 64084, "sha256": "ab" * 32}
QUOTE = {"total": 812.4, "currency": "EUR", "volume_mm3": 310.2, "surface_mm2": 880.0, "metal_mass_g": 4.8,
         "breakdown": {"metal": 600.0, "labour": 180.4, "fixed": 32.0}, "pricing_version": "2025-01"}


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("mes"), pool_size=3)
    yield database
    await database.dispose()


def shop_events(order_id: uuid.UUID, *, start_seq: int = 1, t0: datetime | None = None,
                model: dict[str, Any] | None = None, alloy: str = "gold_750") -> list[Envelope]:
    """INITIATED -> FILE_UPLOADED -> SUBMITTED as the shop emits them."""
    t0 = t0 or datetime.now(UTC)
    actor = "customer:cust-1"
    model = model or MODEL
    steps = [
        StatusChanged(status=S.INITIATED, actor=actor, at=t0, alloy=alloy, created_at=t0,
                      owner={"kind": "customer", "id": "cust-1", "name": "Jane Test"}),
        StatusChanged(status=S.FILE_UPLOADED, previous_status=S.INITIATED, actor=actor,
                      at=t0 + timedelta(seconds=30), model=model),
        StatusChanged(status=S.SUBMITTED, previous_status=S.FILE_UPLOADED, actor=actor,
                      at=t0 + timedelta(seconds=40), model=model, alloy=alloy),
    ]
    return [status_envelope(producer="shop", order_id=order_id, seq=seq, change=change, correlation_id="corr-1")
            for seq, change in enumerate(steps, start=start_seq)]


def delivery(envelope: Envelope | None = None, *, body: bytes | None = None) -> Delivery:
    return Delivery(body=body if body is not None else envelope.model_dump_json().encode(),  # type: ignore[union-attr]
                    headers={}, routing_key=envelope.type if envelope else "x", message_id=None, attempt=0,
                    redelivered=False)


async def feed(db: Database, envelope: Envelope, estimate: QueueEstimate = ESTIMATE) -> str:
    return await handle_event(db, delivery(envelope), estimate)


async def order_row(db: Database, order_id: uuid.UUID) -> Any:
    async with db.sessions() as session:
        return (await session.execute(select(production_orders).where(production_orders.c.id == order_id))).first()


async def history(db: Database, order_id: uuid.UUID) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(
            select(order_history).where(order_history.c.order_id == order_id).order_by(order_history.c.seq)
        )).all())


async def jobs(db: Database, order_id: uuid.UUID) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(
            select(pricing_jobs).where(pricing_jobs.c.order_id == order_id).order_by(pricing_jobs.c.submit_seq)
        )).all())


async def outbox_rows(db: Database, order_id: uuid.UUID) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(
            select(OUTBOX).where(OUTBOX.c.order_id == order_id).order_by(OUTBOX.c.id)
        )).all())


def events_of(rows: list[Any]) -> list[Envelope]:
    return [Envelope.model_validate_json(r.body) for r in rows if r.exchange == EVENTS_EXCHANGE]


async def test_submitted_order_is_queued_for_pricing_with_progress(db: Database) -> None:
    order_id = uuid.uuid4()
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    outcomes = [await feed(db, env) for env in shop_events(order_id, t0=t0)]
    assert outcomes == ["ok", "ok", "ok"]

    row = await order_row(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4
    assert row.alloy == "gold_750" and row.owner_kind == "customer" and row.owner_name == "Jane Test"
    assert row.created_at == t0 and row.model["key"] == MODEL["key"]

    [job] = await jobs(db, order_id)
    assert job.state == "queued" and job.submit_seq == 3 and job.attempts == 0 and job.worker is None
    async with db.sessions() as session:
        ahead = await repository.jobs_ahead(session, job.enqueued_at, job.id)
        average = domain.average_seconds(await repository.recent_durations(session), ESTIMATE.default_seconds)
    assert row.progress == {"queue_position": ahead + 1,
                            "eta_seconds": domain.eta_seconds(ahead + 1, average, ESTIMATE.consumers)}

    steps = await history(db, order_id)
    assert [(h.seq, h.status, h.by) for h in steps] == [
        (1, "INITIATED", "customer:cust-1"), (2, "FILE_UPLOADED", "customer:cust-1"),
        (3, "SUBMITTED", "customer:cust-1"), (4, "PRICE_CALCULATING", domain.SYSTEM_ACTOR),
    ]

    # Exactly two messages for the outbox: the status event and the pricing job, in one commit.
    rows = await outbox_rows(db, order_id)
    assert len(rows) == 2
    [event] = events_of(rows)
    assert event.type == "mes.order.price_calculating" and event.producer == "mes" and event.seq == 4
    assert event.correlation_id == "corr-1"
    assert event.payload["progress"] == row.progress and event.payload["previous_status"] == "SUBMITTED"
    [job_row] = [r for r in rows if r.exchange == ""]
    assert job_row.routing_key == PRICING_QUEUE and job_row.headers["event_type"] == domain.JOB_MESSAGE_TYPE
    message = domain.PricingJobMessage.model_validate_json(job_row.body)
    assert (message.job_id, message.order_id, message.submit_seq) == (job.id, order_id, 3)
    assert job_row.message_id == job.id


async def test_queue_positions_and_eta_grow_with_the_queue(db: Database) -> None:
    async with db.sessions() as session:  # no job finishes meanwhile: the average stays put
        average = domain.average_seconds(await repository.recent_durations(session), 3.0)
    one_worker = QueueEstimate(consumers=1, default_seconds=3.0)
    progresses = []
    for _ in range(3):
        order_id = uuid.uuid4()
        for env in shop_events(order_id):
            await feed(db, env, one_worker)
        progresses.append((await order_row(db, order_id)).progress)
    first = progresses[0]["queue_position"]
    assert [p["queue_position"] for p in progresses] == [first, first + 1, first + 2]
    assert [p["eta_seconds"] for p in progresses] == [
        domain.eta_seconds(position, average, 1) for position in (first, first + 1, first + 2)]
    # Twice the workers, half the wait.
    order_id = uuid.uuid4()
    for env in shop_events(order_id):
        await feed(db, env, QueueEstimate(consumers=2, default_seconds=3.0))
    progress = (await order_row(db, order_id)).progress
    assert progress == {"queue_position": first + 3, "eta_seconds": domain.eta_seconds(first + 3, average, 2)}


async def test_out_of_order_events_are_parked_then_applied_and_duplicates_dropped(db: Database) -> None:
    order_id = uuid.uuid4()
    initiated, uploaded, submitted = shop_events(order_id)
    assert await feed(db, initiated) == "ok"
    assert await feed(db, submitted) == "deferred"  # before its predecessor
    row = await order_row(db, order_id)
    assert row.status == "INITIATED" and await jobs(db, order_id) == []

    assert await feed(db, uploaded) == "ok"  # fills the gap: the parked SUBMITTED applies too
    row = await order_row(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4
    assert len(await jobs(db, order_id)) == 1

    assert await feed(db, submitted) == "duplicate"
    assert await feed(db, initiated) == "duplicate"
    assert len(await jobs(db, order_id)) == 1
    assert [h.status for h in await history(db, order_id)] == [
        "INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING"]
    async with db.sessions() as session:
        pending = (await session.execute(
            select(func.count()).select_from(inbox).where(inbox.c.order_id == order_id, inbox.c.applied_at.is_(None))
        )).scalar_one()
    assert pending == 0


async def test_a_replayed_event_with_a_new_id_is_stale(db: Database) -> None:
    order_id = uuid.uuid4()
    initiated, uploaded, _ = shop_events(order_id)
    await feed(db, initiated)
    await feed(db, uploaded)
    again = uploaded.model_copy(update={"event_id": uuid.uuid4()})
    assert await feed(db, again) == "stale"
    assert len(await history(db, order_id)) == 2


async def test_events_that_can_never_apply_are_permanent_errors(db: Database) -> None:
    order_id = uuid.uuid4()
    initiated, uploaded, submitted = shop_events(order_id)
    with pytest.raises(PermanentError):
        await handle_event(db, delivery(body=b'{"not": "an envelope"}'), ESTIMATE)
    with pytest.raises(PermanentError):  # SUBMITTED needs a model: the payload schema says so
        bad = initiated.model_copy(update={"payload": {"status": "SUBMITTED", "actor": "x"}, "seq": 3,
                                           "type": "shop.order.submitted"})
        await handle_event(db, delivery(bad), ESTIMATE)
    with pytest.raises(PermanentError):  # production does not consume its own events
        await feed(db, initiated.model_copy(update={"producer": "mes", "type": "mes.order.initiated"}))
    with pytest.raises(PermanentError):  # type and payload disagree
        await feed(db, initiated.model_copy(update={"type": "shop.order.submitted"}))
    assert await feed(db, uploaded) == "deferred"  # unknown order: INITIATED may still come
    stranger = shop_events(uuid.uuid4())[1].model_copy(update={"seq": 1})
    with pytest.raises(PermanentError):  # seq 1 of an unknown order that is not its creation
        await feed(db, stranger)

    order_id = uuid.uuid4()
    initiated, uploaded, submitted = shop_events(order_id)
    await feed(db, initiated)
    # SUBMITTED straight after INITIATED (seq 2): the transition table refuses it.
    skipped = submitted.model_copy(update={"seq": 2, "event_id": uuid.uuid4()})
    with pytest.raises(PermanentError):
        await feed(db, skipped)
    row = await order_row(db, order_id)
    assert row.status == "INITIATED" and row.seq == 1
    async with db.sessions() as session:  # rolled back: a fixed replay is processed afresh
        kept = (await session.execute(select(inbox).where(inbox.c.event_id == skipped.event_id))).first()
    assert kept is None

    # CRM may not approve an order the shop owns (single writer).
    approve = status_envelope(producer="crm", order_id=order_id, seq=2, change=StatusChanged(
        status=S.MANUFACTURING_APPROVED, actor="seller:bob"))
    with pytest.raises(PermanentError):
        await feed(db, approve)


async def test_a_parked_event_continues_its_own_trace_when_its_turn_comes(db: Database) -> None:
    """SUBMITTED arrives before FILE_UPLOADED: the pricing job it starts belongs to the submit's trace,
    not to the trace of the upload that unblocked it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    order_id = uuid.uuid4()
    traces = {name: format(random.getrandbits(128), "032x") for name in ("initiated", "uploaded", "submitted")}
    initiated, uploaded, submitted = (
        envelope.model_copy(update={"traceparent": f"00-{traces[name]}-{format(random.getrandbits(64), '016x')}-01"})
        for envelope, name in zip(shop_events(order_id), traces, strict=True))
    with use_provider(provider):
        assert await feed(db, initiated) == "ok"
        assert await feed(db, submitted) == "deferred"
        assert await feed(db, uploaded) == "ok"  # applies the parked SUBMITTED too
    applied = [s for s in exporter.get_finished_spans() if s.name == "shop.order.submitted apply parked"]
    assert len(applied) == 1 and format(applied[0].context.trace_id, "032x") == traces["submitted"]
    assert applied[0].attributes["alexandrite.order_id"] == str(order_id)
    job = [r for r in await outbox_rows(db, order_id) if r.routing_key == PRICING_QUEUE]
    assert len(job) == 1 and job[0].headers["traceparent"].split("-")[1] == traces["submitted"]


async def test_a_parked_event_that_cannot_apply_is_dead_lettered_alone(db: Database) -> None:
    order_id = uuid.uuid4()
    initiated, uploaded, _ = shop_events(order_id)
    await feed(db, initiated)
    # seq 3 from CRM while the shop owns the order: parked now, broken when its turn comes.
    broken = status_envelope(producer="crm", order_id=order_id, seq=3, change=StatusChanged(
        status=S.CANCELLED, actor="seller:bob", reason="duplicate order"))
    assert await feed(db, broken) == "deferred"
    assert await feed(db, uploaded) == "ok"
    row = await order_row(db, order_id)
    assert row.status == "FILE_UPLOADED" and row.seq == 2
    dead = [r for r in await outbox_rows(db, order_id) if r.routing_key == dead_letter_queue("mes.events")]
    assert len(dead) == 1 and Envelope.model_validate_json(dead[0].body).event_id == broken.event_id
    assert "cannot apply" in dead[0].headers["x-error"]


async def test_resubmission_after_a_failed_pricing_makes_a_new_job(db: Database) -> None:
    order_id = uuid.uuid4()
    for env in shop_events(order_id):
        await feed(db, env)
    started = await job_steps.begin_job(db, (await jobs(db, order_id))[0].id, worker="w-test")
    assert isinstance(started, job_steps.StartedJob)
    outcome = await job_steps.finish_job(db, started, worker="w-test", duration_ms=12,
                                        failure={"code": "not_watertight", "message": "The model has holes."})
    assert outcome == "failed"
    row = await order_row(db, order_id)
    assert row.status == "PRICE_CALCULATION_FAILED" and row.seq == 5 and row.progress is None
    assert row.failure == {"code": "not_watertight", "message": "The model has holes."}

    # The customer re-uploads (seq 6) and submits again (seq 7): a second job.
    fixed = {**MODEL, "key": "models/cd/fixed.stl", "sha256": "cd" * 32}
    actor = "customer:cust-1"
    reupload = status_envelope(producer="shop", order_id=order_id, seq=6, change=StatusChanged(
        status=S.FILE_UPLOADED, previous_status=S.PRICE_CALCULATION_FAILED, actor=actor, model=fixed))
    resubmit = status_envelope(producer="shop", order_id=order_id, seq=7, change=StatusChanged(
        status=S.SUBMITTED, previous_status=S.FILE_UPLOADED, actor=actor, model=fixed, alloy="gold_750"))
    assert await feed(db, reupload) == "ok"
    row = await order_row(db, order_id)
    assert row.status == "FILE_UPLOADED" and row.failure is None and row.model["key"] == fixed["key"]
    assert await feed(db, resubmit) == "ok"
    first, second = await jobs(db, order_id)
    assert (first.state, first.submit_seq, first.duration_ms) == ("failed", 3, 12)
    assert (second.state, second.submit_seq) == ("queued", 7)
    row = await order_row(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 8
    types = [e.type for e in events_of(await outbox_rows(db, order_id))]
    assert types == ["mes.order.price_calculating", "mes.order.price_calculation_failed",
                     "mes.order.price_calculating"]
    job_messages = [json.loads(r.body) for r in await outbox_rows(db, order_id) if r.routing_key == PRICING_QUEUE]
    assert [m["submit_seq"] for m in job_messages] == [3, 7]


async def test_crm_approval_puts_the_order_on_the_dashboard(db: Database) -> None:
    order_id = uuid.uuid4()
    for env in shop_events(order_id):
        await feed(db, env)
    started = await job_steps.begin_job(db, (await jobs(db, order_id))[0].id, worker="w-test")
    assert isinstance(started, job_steps.StartedJob)
    assert await job_steps.finish_job(db, started, worker="w-test", duration_ms=5, quote=QUOTE) == "priced"
    at = datetime.now(UTC)
    approve = status_envelope(producer="crm", order_id=order_id, seq=6, change=StatusChanged(
        status=S.MANUFACTURING_APPROVED, previous_status=S.PRICE_CALCULATED, actor="seller:bob", at=at,
        quote=QUOTE, alloy="gold_750"))
    assert await feed(db, approve) == "ok"
    row = await order_row(db, order_id)
    assert row.status == "MANUFACTURING_APPROVED" and row.seq == 6 and row.approved_at == at
    assert row.quote == QUOTE
    assert (await history(db, order_id))[-1].by == "seller:bob"


async def general_feed(db: Database, envelope: Envelope, estimate: QueueEstimate = ESTIMATE) -> str:
    """The consumer without its one-statement path: what applies an event out of its turn (or parked)."""

    async def _apply(uow: UnitOfWork, env: Envelope, change: StatusChanged) -> None:
        await apply_event(uow, env, change, estimate)

    return await consume_order_event(db, delivery(envelope), service=SERVICE, producers=PRODUCERS,
                                     orders=production_orders, apply=_apply, cannot_apply=CANNOT_APPLY)


def _kinds(queries: list[str]) -> list[str]:
    return ["stats" if q.lstrip().startswith("SELECT (SELECT count(*) FROM pricing_jobs")
            else "submitted" if q.startswith("WITH locked") and "INSERT INTO pricing_jobs" in q
            else "claim" if q.startswith("WITH locked") else "write" if "UPDATE inbox" in q
            else "job" if "INSERT INTO pricing_jobs" in q else "transition" if "order_history" in q
            else q.strip(" ;") for q in queries]


async def test_a_submission_out_of_the_one_statement_is_six_statements_none_through_sqlalchemy(
        settings: Settings) -> None:
    """The general path (an event out of its turn, or parked): BEGIN, the claim, the SUBMITTED write, the job
    with its queue position's inputs, the move to PRICE_CALCULATING with the event and the job message written
    to the outbox, COMMIT: all plain SQL on the unit's connection (asyncpg's query log of the one pooled
    connection); SQLAlchemy sees no statement at all. What the customer confirmed is kept."""
    from sqlalchemy import event

    database = Database(settings.database_url("mes"), pool_size=1)
    try:
        for env in shop_events(uuid.uuid4()):  # the connection learns the statements' types (asyncpg, once)
            await general_feed(database, env)
        order_id = uuid.uuid4()
        initiated, uploaded, submitted = shop_events(order_id)
        assert [await feed(database, e) for e in (initiated, uploaded)] == ["ok", "ok"]
        async with database.sessions() as session:  # the one pooled connection, to listen to
            conn = (await (await session.connection()).get_raw_connection()).driver_connection
        queries: list[str] = []
        conn.add_query_logger(lambda logged: queries.append(logged.query))
        through_sqlalchemy: list[str] = []

        def _seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            through_sqlalchemy.append(statement)

        event.listen(database.engine.sync_engine, "before_cursor_execute", _seen)
        change = submitted.payload | {"confirm": ["scale"]}
        confirmed = submitted.model_copy(update={"payload": change})
        assert await general_feed(database, confirmed) == "ok"
        for _ in range(5):  # asyncpg calls its query loggers soon after each query, not during it
            await asyncio.sleep(0)
        assert _kinds(queries) == ["BEGIN", "claim", "write", "job", "transition", "COMMIT"], queries
        assert "INSERT INTO outbox" in queries[4]
        assert through_sqlalchemy == []
        event.remove(database.engine.sync_engine, "before_cursor_execute", _seen)
        row = await order_row(database, order_id)
        assert (row.status, row.seq) == ("PRICE_CALCULATING", 4)
        [job] = await jobs(database, order_id)
        assert job.confirm == ["scale"] and job.state == "queued"
        assert [(r.exchange, r.routing_key) for r in await outbox_rows(database, order_id)] == [
            (EVENTS_EXCHANGE, "mes.order.price_calculating"), ("", PRICING_QUEUE)]
    finally:
        await database.dispose()


async def test_a_submission_in_its_turn_is_two_round_trips(settings: Settings) -> None:
    """In its turn, a SUBMITTED event costs two round trips on the plain pool: the queue's figures, then ONE
    statement (no BEGIN, no COMMIT) that moves the order to SUBMITTED and on to PRICE_CALCULATING, queues the
    job with what the customer confirmed and writes the event and the job message to the outbox."""
    database = Database(settings.database_url("mes"), pool_size=1)
    try:
        for env in shop_events(uuid.uuid4()):
            await feed(database, env)
        later = uuid.uuid4()  # a job queued "later" (another host's clock ahead): not ahead of this order's
        for env in shop_events(later):
            await feed(database, env)
        async with database.sessions() as session:
            await session.execute(pricing_jobs.update().where(pricing_jobs.c.order_id == later)
                                  .values(enqueued_at=datetime.now(UTC) + timedelta(hours=1)))
            await session.commit()
        order_id = uuid.uuid4()
        initiated, uploaded, submitted = shop_events(order_id)
        assert [await feed(database, e) for e in (initiated, uploaded)] == ["ok", "ok"]
        queries: list[str] = []
        async with (await database.raw()).acquire() as conn:  # the plain pool's one connection
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        confirmed = submitted.model_copy(update={"payload": submitted.payload | {"confirm": ["scale"]}})
        assert await feed(database, confirmed) == "ok"
        for _ in range(5):
            await asyncio.sleep(0)
        assert _kinds(queries) == ["stats", "submitted"], queries
        row = await order_row(database, order_id)
        assert (row.status, row.seq, row.quote, row.failure) == ("PRICE_CALCULATING", 4, None, None)
        assert [(h.seq, h.status, h.previous_status, h.by) for h in await history(database, order_id)][2:] == [
            (3, "SUBMITTED", "FILE_UPLOADED", "customer:cust-1"), (4, "PRICE_CALCULATING", "SUBMITTED", domain.SYSTEM_ACTOR)]
        [job] = await jobs(database, order_id)
        assert (job.confirm, job.state, job.submit_seq, job.enqueued_at) == (["scale"], "queued", 3, row.status_since)
        rows = await outbox_rows(database, order_id)
        assert [(r.exchange, r.routing_key) for r in rows] == [
            (EVENTS_EXCHANGE, "mes.order.price_calculating"), ("", PRICING_QUEUE)]
        [moved] = events_of(rows)
        assert (moved.seq, moved.correlation_id, moved.payload["progress"]) == (4, "corr-1", row.progress)
        async with database.sessions() as session:  # the jobs queued before it, as the general path counts
            ahead = await repository.jobs_ahead(session, job.enqueued_at, job.id)
        assert row.progress["queue_position"] == ahead + 1
        assert json.loads(rows[1].body)["job_id"] == str(job.id)
        # delivered again: the inbox has it, nothing more is written
        assert await feed(database, confirmed) == "duplicate"
        assert len(await jobs(database, order_id)) == 1 and len(await outbox_rows(database, order_id)) == 2
    finally:
        await database.dispose()


async def test_a_new_order_is_one_round_trip_into_its_month(settings: Settings) -> None:
    """The INITIATED event writes the production order (into the partition of its creation month), its
    history line and the inbox mark in ONE statement; a redelivery writes nothing."""
    database = Database(settings.database_url("mes"), pool_size=1)
    try:
        for env in shop_events(uuid.uuid4())[:1]:  # the connection learns the statement's types (asyncpg, once)
            await feed(database, env)
        queries: list[str] = []
        async with (await database.raw()).acquire() as conn:
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        order_id, t0 = uuid.uuid4(), datetime.now(UTC)
        initiated = shop_events(order_id, t0=t0)[0]
        assert await feed(database, initiated) == "ok"
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(queries) == 1 and 'INSERT INTO "production_orders"' in queries[0], queries
        row = await order_row(database, order_id)
        assert (row.status, row.seq, row.created_at, row.owner_kind) == ("INITIATED", 1, t0, "customer")
        async with database.sessions() as session:
            where = (await session.execute(text(
                "SELECT tableoid::regclass::text FROM production_orders WHERE id = :id"), {"id": order_id})).scalar_one()
        assert where == partition_name(month_start(t0))
        assert [(h.seq, h.status) for h in await history(database, order_id)] == [(1, "INITIATED")]
        assert await feed(database, initiated) == "duplicate"
        assert len(await history(database, order_id)) == 1
    finally:
        await database.dispose()


async def _submission(db: Database, consume: Any, order_id: uuid.UUID, t0: datetime) -> dict[str, Any]:
    """An order fed its three shop events by ``consume``, as written, without ids and the times of the
    move to PRICE_CALCULATING (now, when the event is applied) and the queue estimate (it depends on what
    else is queued)."""
    for env in shop_events(order_id, t0=t0):
        assert await consume(db, env) == "ok"
    row = (await order_row(db, order_id))._asdict()
    [job] = await jobs(db, order_id)
    rows = await outbox_rows(db, order_id)
    [moved] = events_of(rows)
    return {
        "row": {k: v for k, v in row.items() if k not in ("id", "updated_at", "status_since", "progress")},
        "progress": sorted(row["progress"]),
        "history": [(h.seq, h.status, h.previous_status, h.by, h.at if h.seq < 4 else None)
                    for h in await history(db, order_id)],
        "inbox": [(m.seq, m.type, m.outcome) for m in await inbox_marks(db, order_id)],
        "job": (job.state, job.submit_seq, job.confirm, job.attempts),
        "outbox": [(r.exchange, r.routing_key, sorted(r.headers)) for r in rows],
        "event": {k: v for k, v in moved.payload.items() if k not in ("at", "progress")},
        "envelope": (moved.type, moved.seq, moved.producer, moved.correlation_id),
    }


async def inbox_marks(db: Database, order_id: uuid.UUID) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(
            select(inbox).where(inbox.c.order_id == order_id).order_by(inbox.c.seq))).all())


async def test_a_submission_in_its_turn_writes_what_the_general_path_writes(db: Database) -> None:
    """Two orders with the same events, one through the general path only: the order's row, its history,
    inbox marks, job, outbox rows and the PRICE_CALCULATING event are the same, column for column."""
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    general = await _submission(db, general_feed, uuid.uuid4(), t0)
    in_turn = await _submission(db, feed, uuid.uuid4(), t0)
    assert general == in_turn
    assert in_turn["row"]["status"] == "PRICE_CALCULATING" and in_turn["progress"] == ["eta_seconds",
                                                                                        "queue_position"]


async def test_the_next_transition_writes_nothing_when_the_row_moved_meanwhile(db: Database) -> None:
    """The move that follows a transition of the unit re-checks the row's status and seq: a stale one is a
    LookupError, and nothing of it is written."""
    order_id = uuid.uuid4()
    for env in shop_events(order_id):
        await feed(db, env)
    row = await order_row(db, order_id)
    assert (row.status, row.seq) == ("PRICE_CALCULATING", 4)
    stale = Transition(order_id, S.FILE_UPLOADED, S.SUBMITTED, 3, row.status_since, "customer:cust-1")
    messages_before = len(await outbox_rows(db, order_id))
    async with UnitOfWork(db) as uow:
        uow.send(OutgoingMessage(exchange="", routing_key=PRICING_QUEUE, body=b"{}", order_id=order_id))
        with pytest.raises(LookupError):
            await record_next_transition(uow, production_orders, order_history, service="mes", after=stale,
                                         target=S.PRICE_CALCULATING, by=domain.SYSTEM_ACTOR, requested_by="mes",
                                         with_messages=True)
        await uow.commit()
    assert [h.seq for h in await history(db, order_id)] == [1, 2, 3, 4]
    assert (await order_row(db, order_id)).seq == 4
    assert len(await outbox_rows(db, order_id)) == messages_before  # the statement took the message: not written
