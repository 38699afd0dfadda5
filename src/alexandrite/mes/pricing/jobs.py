"""Pricing jobs: queued with the order's move to PRICE_CALCULATING, begun, released and finished by the
workers. Each step is one unit of work; a job's final state makes every order priced exactly once, however
many times its message is delivered."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog

from alexandrite.contracts.events import Envelope, Failure, Progress, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import OrderStatus, check_transition
from alexandrite.kit import metrics as metrics_kit
from alexandrite.kit.db import (
    Database,
    OutgoingMessage,
    StatementUnitOfWork,
    UnitOfWork,
    outbox_args,
    outbox_rows_sql,
    outgoing_event,
    traced,
)
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.mes import domain, metrics, progress, repository
from alexandrite.mes.domain import (
    ACTIVE_JOB_STATES,
    AVERAGE_WINDOW,
    JOB_MESSAGE_TYPE,
    SERVICE,
    SYSTEM_ACTOR,
    JobState,
    PricingJobMessage,
    is_final,
    projection_values,
    worker_actor,
)
from alexandrite.mes.tables import order_history, production_orders
from alexandrite.orders.in_turn import MOVED_TAIL_FIRST, InTurn, MovesOn, may_apply_in_turn
from alexandrite.orders.one_statement import history_and_outbox, message_args, relay_wakeup
from alexandrite.orders.records import Transition, record_next_transition

log = structlog.get_logger(__name__)
S = OrderStatus


def no_earlier_than(at: datetime | None) -> datetime:
    """Now, but never before the previous step (another host's clock may run a little ahead)."""
    now = utcnow()
    return max(now, at) if at is not None and at.tzinfo is not None else now


# Queue a job in one statement: $1 job id, $2 order id, $3 submit seq, $4 enqueued at, $5 confirm (JSON text
# or NULL), $6 how many finished jobs the average takes. Answers the queue position's inputs as of the
# statement's snapshot (the new job is not among the jobs ahead: those are strictly before it).
ACTIVE_STATES = tuple(s.value for s in ACTIVE_JOB_STATES)
_ACTIVE = ", ".join(f"'{state}'" for state in sorted(ACTIVE_STATES))
_IS_ACTIVE = f"state IN ({_ACTIVE})"


def _durations(limit: str) -> str:
    # Only a priced or failed job has a duration (a cancelled one's is NULL, and a final job never changes):
    # the condition is the partial index's own, which hands over the newest first however many there are.
    return f"""ARRAY(SELECT duration_ms FROM pricing_jobs WHERE duration_ms IS NOT NULL
              ORDER BY finished_at DESC LIMIT {limit}::int) AS durations"""


def _ahead(enqueued_at: str, job_id: str) -> str:
    return f"""(SELECT count(*) FROM pricing_jobs
         WHERE {_IS_ACTIVE} AND enqueued_at <= {enqueued_at}::timestamptz
           AND (enqueued_at, id) < ({enqueued_at}::timestamptz, {job_id}::uuid)) AS ahead"""


QUEUE_SQL = f"""
WITH j AS (
    INSERT INTO pricing_jobs (id, order_id, submit_seq, state, enqueued_at, confirm)
    VALUES ($1::uuid, $2::uuid, $3::int, '{JobState.QUEUED.value}', $4::timestamptz, $5::jsonb)
)
SELECT {_ahead("$4", "$1")},
       {_durations("$6")}
"""
# The same inputs read just before a job is queued by one statement (:func:`queued_in_turn`): $1 the job's
# enqueued_at, $2 its id, $3 how many finished jobs the average takes.
QUEUE_STATS_SQL = f"""
SELECT {_ahead("$1", "$2")}, {_durations("$3")}
"""


async def start_pricing(uow: UnitOfWork, submitted: Transition, *, estimate: progress.QueueEstimate,
                        correlation_id: str | None = None, confirm: list[str] | None = None) -> dict[str, Any]:
    """Queue a pricing job for an order this unit just moved to SUBMITTED (``submitted``: its row is locked)
    and move it to PRICE_CALCULATING; returns the progress.

    ``confirm``: what the customer confirmed with this submission (e.g. ``["scale"]``), kept on the job.
    Two statements on the unit's connection (:data:`QUEUE_SQL`, then the order's row, its history line and
    the unit's messages: the event and the job message); nothing is kept when a step fails.
    """
    order_id = submitted.order_id
    job_id = uuid.uuid4()
    now = no_earlier_than(submitted.at)
    conn = await uow.driver()
    queued = await conn.fetchrow(QUEUE_SQL, job_id, order_id, submitted.seq, now,
                                 orjson.dumps(confirm).decode() if confirm else None, AVERAGE_WINDOW)
    queue_progress, moved = _price_calculating(order_id, submitted.seq, queued, estimate, now, correlation_id)
    # The event and the job message first: the order's move writes them to the outbox in its statement.
    uow.emit(moved)
    uow.send(job_message(job_id, order_id, submitted.seq, now))
    await record_next_transition(
        uow, production_orders, order_history, service=SERVICE, after=submitted, target=S.PRICE_CALCULATING,
        by=SYSTEM_ACTOR, requested_by=SERVICE, at=now,
        values={"progress": queue_progress, "quote": None, "failure": None}, with_messages=True,
    )
    uow.after_commit(metrics.PRICING_JOBS_CREATED.inc)
    log.info("pricing_job_queued", order_id=str(order_id), job_id=str(job_id), **queue_progress)
    return queue_progress


def _price_calculating(order_id: uuid.UUID, submit_seq: int, queued: Any, estimate: progress.QueueEstimate,
                       at: datetime, correlation_id: str | None) -> tuple[dict[str, Any], Envelope]:
    """The queued job's progress from the queue's figures (``queued``: ahead, durations) and the event of the
    order's move to PRICE_CALCULATING that carries it."""
    average = domain.average_seconds(queued["durations"], estimate.default_seconds)
    queue_progress = domain.progress(int(queued["ahead"]) + 1, average, estimate.consumers)
    return queue_progress, status_envelope(
        producer=SERVICE, order_id=order_id, seq=submit_seq + 1, correlation_id=correlation_id,
        change=StatusChanged(status=S.PRICE_CALCULATING, previous_status=S.SUBMITTED, actor=SYSTEM_ACTOR, at=at,
                             progress=Progress.model_validate(queue_progress)))


def job_message(job_id: uuid.UUID, order_id: uuid.UUID, submit_seq: int, enqueued_at: datetime) -> OutgoingMessage:
    """The message that hands a queued job to the workers."""
    job = PricingJobMessage(job_id=job_id, order_id=order_id, submit_seq=submit_seq, enqueued_at=enqueued_at)
    return OutgoingMessage(
        exchange="",
        routing_key=PRICING_QUEUE,
        body=job.model_dump_json().encode(),
        headers={"event_type": JOB_MESSAGE_TYPE, "order_id": str(order_id), "job_id": str(job_id)},
        message_id=job_id,
        order_id=order_id,
    )


# What a SUBMITTED event in its turn writes besides the order's moves (orders/in_turn.py, after a next move):
# the job ($15 id, $16 confirm; submitted at seq $4, queued at $13) and the outbox rows of the
# PRICE_CALCULATING event and the job message (from $17, :func:`~alexandrite.kit.db.outbox_args`).
_QUEUED_TAIL = f"""
, j AS (
    INSERT INTO pricing_jobs (id, order_id, submit_seq, state, enqueued_at, confirm)
    SELECT ${MOVED_TAIL_FIRST}::uuid, id, $4::int, '{JobState.QUEUED.value}', $13::timestamptz,
           ${MOVED_TAIL_FIRST + 1}::jsonb FROM w
), x AS (
    {outbox_rows_sql(MOVED_TAIL_FIRST + 2)}
     WHERE EXISTS (SELECT 1 FROM w)
    RETURNING 1
)"""
_QUEUED_SELECTED = f", {relay_wakeup()} AS relay_woken"


async def queued_in_turn(db: Database, envelope: Envelope, change: StatusChanged,
                         estimate: progress.QueueEstimate) -> InTurn | None:
    """A SUBMITTED event in its turn as one statement (orders/in_turn.py): the order moves to SUBMITTED and
    on to PRICE_CALCULATING, the job is queued, the event and the job message go to the outbox, the inbox
    marks the event; what :func:`start_pricing` does after the general path's claim, in two round trips
    (the queue's figures read, then the statement) instead of six. None when the statement may not apply
    it (the general path decides)."""
    if may_apply_in_turn(envelope, change) is None:
        return None
    order_id, job_id = envelope.order_id, uuid.uuid4()
    now = no_earlier_than(change.at)
    stats = await (await db.raw()).fetchrow(QUEUE_STATS_SQL, now, job_id, AVERAGE_WINDOW)
    queue_progress, moved = _price_calculating(order_id, envelope.seq, stats, estimate, now, envelope.correlation_id)
    event = outgoing_event(moved)
    job = traced(job_message(job_id, order_id, envelope.seq, now))
    confirm = list(change.confirm or ()) or None

    def _queued() -> None:
        metrics.PRICING_JOBS_CREATED.inc()
        log.info("pricing_job_queued", order_id=str(order_id), job_id=str(job_id), **queue_progress)

    return InTurn(history=order_history,
                  values={**projection_values(change), "progress": queue_progress, "quote": None, "failure": None},
                  tail=_QUEUED_TAIL, tail_args=(job_id, confirm, *outbox_args([event, job])),
                  selected=_QUEUED_SELECTED, moves_on=MovesOn(S.PRICE_CALCULATING, now, SYSTEM_ACTOR),
                  after_commit=(_queued,))


_PRICING = S.PRICE_CALCULATING.value

# Begin a job in one statement: $1 job id, $2 now, $3 worker. The job's row is locked; the job runs
# (one more attempt, by this worker) when it is active and its order is being priced with a model and
# an alloy, or is cancelled when the order is gone or no longer being priced. The answer says which,
# with what the worker needs (and what finishing needs: the order's seq, status_since, created_at).
BEGIN_SQL = f"""
WITH j AS (
    SELECT id, order_id, state, attempts, submit_seq, enqueued_at, confirm
      FROM pricing_jobs WHERE id = $1::uuid FOR UPDATE
), o AS (
    SELECT o.id, o.status, o.seq, o.alloy, o.model, o.status_since, o.created_at
      FROM production_orders o JOIN j ON o.id = j.order_id
), ran AS (
    UPDATE pricing_jobs p SET state = '{JobState.RUNNING.value}', started_at = $2::timestamptz, worker = $3::text,
           attempts = p.attempts + 1
      FROM j JOIN o ON true
     WHERE p.id = j.id AND j.state IN ({_ACTIVE}) AND o.status = '{_PRICING}'
       AND coalesce(o.alloy, '') <> '' AND coalesce(o.model->>'key', '') <> ''
    RETURNING p.id
), dropped AS (
    UPDATE pricing_jobs p SET state = '{JobState.CANCELLED.value}', finished_at = $2::timestamptz, duration_ms = NULL
      FROM j LEFT JOIN o ON true
     WHERE p.id = j.id AND j.state IN ({_ACTIVE}) AND o.status IS DISTINCT FROM '{_PRICING}'
    RETURNING p.id
)
SELECT j.order_id, j.state, j.attempts, j.submit_seq, j.enqueued_at, j.confirm,
       o.status, o.seq, o.alloy, o.model, o.status_since, o.created_at,
       EXISTS (SELECT 1 FROM ran) AS ran, EXISTS (SELECT 1 FROM dropped) AS dropped
  FROM j LEFT JOIN o ON true
"""


@dataclass(frozen=True)
class StartedJob:
    job_id: uuid.UUID
    order_id: uuid.UUID
    submit_seq: int
    alloy: str
    model_key: str
    filename: str | None
    enqueued_at: datetime
    started_at: datetime
    attempt: int
    confirm: tuple[str, ...] = ()
    # The order as the job began (what its finishing statement expects to find; re-read when it changed).
    order_seq: int = 0
    order_status_since: datetime | None = None
    order_created_at: datetime | None = None


async def begin_job(db: Database, job_id: uuid.UUID, *, worker: str) -> StartedJob | str:
    """Mark a job running (one more attempt, by this worker); or the outcome when there is nothing to do:
    "duplicate" (already priced or failed) or "cancelled" (the order was cancelled meanwhile).

    One statement (:data:`BEGIN_SQL`), its own transaction: one round trip."""
    now = utcnow()
    row = await (await db.raw()).fetchrow(BEGIN_SQL, job_id, now, worker)
    if row is None:
        raise LookupError(f"pricing job {job_id} is unknown")
    if is_final(row["state"]):
        return "cancelled" if row["state"] == JobState.CANCELLED.value else "duplicate"
    if row["dropped"]:
        return "cancelled"
    if not row["ran"]:
        raise ValueError(f"order {row['order_id']} has no model or alloy to price")
    model = row["model"] or {}
    return StartedJob(
        job_id=job_id, order_id=row["order_id"], submit_seq=row["submit_seq"], alloy=row["alloy"],
        model_key=model["key"], filename=model.get("filename"), enqueued_at=row["enqueued_at"], started_at=now,
        attempt=row["attempts"] + 1, confirm=tuple(row["confirm"] or ()), order_seq=row["seq"],
        order_status_since=row["status_since"], order_created_at=row["created_at"],
    )


async def release_job(db: Database, job_id: uuid.UUID, *, worker: str) -> None:
    """The worker failed on this job before finishing it: it waits in the queue again."""
    async with UnitOfWork(db) as uow:
        await repository.requeue(uow.session, job_id, worker=worker)
        await uow.commit()


def _default(obj: Any) -> Any:
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


_PLAIN = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def jsonable(value: Any) -> dict[str, Any]:
    """A plain JSON object (NumPy scalars and the like become numbers) from a dict or a dataclass (read field
    by field, as ``dataclasses.asdict`` would, without its deep copy)."""
    result: dict[str, Any] = orjson.loads(orjson.dumps(value, default=_default, option=_PLAIN))
    return result



# Finish a job in one statement: the order's row is locked first, then the job's (the order as a cancel
# locks them), so a cancel and a (second) completion cannot interleave. $1 order id, $2 target status,
# $3 new seq, $4 at, $5 the status left (PRICE_CALCULATING), $6 by, $7.. the event's outbox row, $12 the
# order's created_at, $13 job id, $14 job state, $15 duration ms, $16 worker, $17 quote, $18 failure.
# The order moves on only if still at seq $3 - 1 and being priced, and the job is still active; a job
# whose order is no longer being priced is cancelled; a final job is left alone ("duplicate").
FINISH_SQL = f"""
WITH o AS (
    SELECT id, status, seq, status_since FROM production_orders
     WHERE id = $1::uuid AND created_at = $12::timestamptz FOR UPDATE
), j AS (
    SELECT p.id, p.state FROM o JOIN pricing_jobs p ON p.id = $13::uuid AND p.order_id = o.id FOR UPDATE OF p
), u AS (
    UPDATE production_orders t SET status = $2::text, seq = $3::int, status_since = $4::timestamptz,
           updated_at = $4::timestamptz, quote = $17::jsonb, failure = $18::jsonb, progress = NULL
      FROM j
     WHERE t.id = $1::uuid AND t.created_at = $12::timestamptz AND t.seq = $3::int - 1 AND t.status = $5::text
       AND j.state IN ({_ACTIVE})
    RETURNING t.id
){history_and_outbox("u", "$3::int, $2::text, $5::text, $4::timestamptz, $6::text", 7)}, f AS (
    UPDATE pricing_jobs p
       SET state = CASE WHEN EXISTS (SELECT 1 FROM u) THEN $14::text ELSE '{JobState.CANCELLED.value}' END,
           finished_at = $4::timestamptz,
           duration_ms = CASE WHEN EXISTS (SELECT 1 FROM u) THEN $15::int END,
           worker = CASE WHEN EXISTS (SELECT 1 FROM u) THEN $16::text ELSE p.worker END
      FROM j, o
     WHERE p.id = j.id AND j.state IN ({_ACTIVE}) AND (EXISTS (SELECT 1 FROM u) OR o.status <> $5::text)
    RETURNING p.state
)
SELECT j.state AS job_state, o.status, o.seq, o.status_since, (SELECT state FROM f) AS finished,
       {relay_wakeup()} AS relay_woken
  FROM o LEFT JOIN j ON true
"""
ATTEMPTS = 5  # the order changed between the job's begin and its finish without leaving PRICE_CALCULATING


async def finish_job(db: Database, job: StartedJob, *, worker: str, duration_ms: int,
                     quote: dict[str, Any] | None = None, failure: dict[str, Any] | None = None,
                     correlation_id: str | None = None) -> str:
    """Record a job's result once: "priced", "failed", or "cancelled" / "duplicate" with no event.

    One statement (:data:`FINISH_SQL`): the order's change, its history line, its event in the outbox
    and the job's final state commit together or not at all.
    """
    if (quote is None) == (failure is None):
        raise ValueError("a job finishes with either a quote or a failure")
    if job.order_created_at is None:
        raise ValueError("a job is finished with what its begin returned")
    actor = worker_actor(worker)
    if quote is not None:
        quote = jsonable(quote)
        target, state = S.PRICE_CALCULATED, JobState.PRICED
    else:
        target, state = S.PRICE_CALCULATION_FAILED, JobState.FAILED
    check_transition(S.PRICE_CALCULATING, target, SERVICE)
    seq, since = job.order_seq, job.order_status_since
    for _ in range(ATTEMPTS):
        now = no_earlier_than(since)
        uow = StatementUnitOfWork(db)
        envelope = status_envelope(producer=SERVICE, order_id=job.order_id, seq=seq + 1, change=StatusChanged(
            status=target, previous_status=S.PRICE_CALCULATING, actor=actor, at=now, quote=quote,
            failure=Failure.model_validate(failure) if failure is not None else None,
        ), correlation_id=correlation_id)
        message = uow.emit(envelope)
        spent = max((now - since).total_seconds(), 0.0) if since is not None else None
        uow.after_commit(functools.partial(_count_transition, target, spent))
        uow.notify_status(_PRICING, target.value, job.order_id, seq + 1)
        row = await uow.commit(
            FINISH_SQL, job.order_id, target.value, seq + 1, now, _PRICING, actor, *message_args(message),
            job.order_created_at, job.job_id, state.value, duration_ms, worker, quote, failure,
            applied=lambda r: r["finished"] == state.value,
        )
        if row is None or row["job_state"] is None:
            raise LookupError(f"pricing job {job.job_id} or its order is unknown")
        if is_final(row["job_state"]):
            return "cancelled" if row["job_state"] == JobState.CANCELLED.value else "duplicate"
        if row["finished"] is not None:
            return str(row["finished"])  # priced / failed, or cancelled: the order left PRICE_CALCULATING
        seq, since = row["seq"], row["status_since"]  # still being priced, but changed since: again
    raise RuntimeError(f"order {job.order_id} kept changing while its pricing job {job.job_id} finished")


def _count_transition(target: OrderStatus, spent: float | None) -> None:
    metrics_kit.ORDER_TRANSITIONS.labels(SERVICE, target.value).inc()
    if spent is not None:
        metrics_kit.TIME_IN_STATUS.labels(SERVICE, _PRICING).observe(spent)
