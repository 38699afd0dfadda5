"""Write side of the order hot paths: each change of an order is ONE statement.

Create, upload and submit each used to be a dozen ORM round trips in a transaction, then a read-back
of the order. Here each change is one data-modifying CTE on the raw pool (a
:class:`~alexandrite.kit.db.StatementUnitOfWork`): it writes the order row, its history entry, the
idempotency key, the event's outbox row and, when the order's partner has a webhook, the delivery
row, all in the statement's single transaction, and the answer is built from what was written
instead of being read back.

- create: 1 round trip (a replayed ``Idempotency-Key``: 2, the second reads the first order);
- submit: 2 (read the order, then ``UPDATE ... WHERE id AND seq AND status`` with the rest); 1 when this
  process wrote the order a moment ago (its row, remembered as a hint: :mod:`alexandrite.shop.recent_rows`);
- upload: 2 (read the order; parse and store the file; the statement); 1 likewise;
- a concurrent change between the read and the statement makes the statement match no row (the
  ``seq`` it expects is gone): nothing is written and the decision is made again on a fresh read.

The rules are the ones :func:`alexandrite.orders.records.record_transition` applies (the transition
table, seq + 1, a history entry per change, the time spent in the status left).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from alexandrite.contracts.events import ModelRef, Party, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import IllegalTransition, OrderStatus, check_transition
from alexandrite.kit import metrics
from alexandrite.kit.db import Database, StatementUnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.security import Principal
from alexandrite.orders.one_statement import OUTBOX_PARAMS, history_and_outbox, message_args, relay_wakeup
from alexandrite.shop.domain import Owner, request_fingerprint
from alexandrite.shop.order_reads import ORDER_SQL, fetch_order, owned, view_of
from alexandrite.shop.recent_rows import recent_rows
from alexandrite.shop.webhooks.deliveries import DISPATCHER_WAKEUP, delivery_cte

SERVICE = "shop"
S = OrderStatus
UPLOADABLE = frozenset({S.INITIATED, S.FILE_UPLOADED, S.PRICE_CALCULATION_FAILED})
SUBMITTABLE = frozenset({S.FILE_UPLOADED, S.INITIATED, S.PRICE_CALCULATION_FAILED, S.CANCELLED})
ATTEMPTS = 5

def _writes_of(row: str, history: str, outbox: int) -> str:
    """The rest of a one-statement order write, after the CTE ``row`` that wrote the order (returning
    ``id, owner_kind, owner_id``): its history line and outbox event (``orders.one_statement``:
    ``history`` is seq, status, previous, at, by; message parameters from ``$outbox``), a partner's
    webhook delivery (``$outbox + 5`` delivery_id, ``$outbox + 6`` payload), and a wake-up for the
    relay and the dispatcher."""
    routing = f"${outbox + 2}"
    delivery, payload = f"${outbox + OUTBOX_PARAMS}", f"${outbox + OUTBOX_PARAMS + 1}"
    return (")" + history_and_outbox(row, history, outbox) + delivery_cte(row, delivery, routing, payload)
            + f"\nSELECT id, {relay_wakeup()} AS relay_woken, {DISPATCHER_WAKEUP} AS dispatcher_woken FROM {row}\n")


# $1 id, $2 owner_kind, $3 owner_id, $4 owner_name, $5 alloy, $6 at, $7 by, then from $8 the event's writes
_CREATE_REST = _writes_of("o", "1, 'INITIATED', NULL, $6, $7::text", 8)
_ORDER_VALUES = """
    INSERT INTO orders (id, owner_kind, owner_id, owner_name, alloy, status, seq, created_at, updated_at,
                        status_since)
"""
CREATE_SQL = ("WITH o AS (" + _ORDER_VALUES
              + "    VALUES ($1::uuid, $2::text, $3::uuid, $4::text, $5::text, 'INITIATED', 1, $6::timestamptz,\n"
              + "            $6, $6)\n"
              + "    RETURNING id, owner_kind, owner_id\n" + _CREATE_REST)
# With an Idempotency-Key ($15 key, $16 request hash): the key is claimed first; when another request
# holds it, nothing at all is written (the order insert reads the claim) and no row comes back.
CREATE_WITH_KEY_SQL = (
    "WITH k AS (\n"
    "    INSERT INTO idempotency_keys (owner_kind, owner_id, key, request_hash, order_id)\n"
    "    VALUES ($2::text, $3::uuid, $15::text, $16::text, $1::uuid)\n"
    "    ON CONFLICT DO NOTHING RETURNING order_id\n"
    "), o AS (" + _ORDER_VALUES
    + "    SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::text, 'INITIATED', 1, $6::timestamptz, $6, $6 FROM k\n"
    + "    RETURNING id, owner_kind, owner_id\n" + _CREATE_REST)
# The first order of a key, with the key's request hash.
REPLAY_SQL = ORDER_SQL.replace(
    "SELECT o.id,", "SELECT k.request_hash, o.id,").replace(
    "  FROM orders o\n WHERE o.id = $1",
    "  FROM idempotency_keys k JOIN orders o ON o.id = k.order_id\n"
    " WHERE k.owner_kind = $1 AND k.owner_id = $2 AND k.key = $3")

def _transition_sql(extra: str) -> str:
    """$1 id, $2 new status, $3 new seq, $4 at, $5 status left, $6 by, from $7 the event's writes; then
    (from $14) the ``extra`` columns of the change."""
    return ("""
WITH u AS (
    UPDATE orders SET status = $2::text, seq = $3::int, status_since = $4::timestamptz, updated_at = $4""" + extra + """
     WHERE id = $1::uuid AND seq = $3::int - 1 AND status = $5::text
    RETURNING id, owner_kind, owner_id
""" + _writes_of("u", "$3, $2, $5, $4, $6::text", 7))


SUBMIT_SQL = _transition_sql("")
UPLOAD_SQL = _transition_sql(", model = $14::jsonb, failure = NULL, quote = NULL, progress = NULL")


def webhook_payload(order_id: uuid.UUID, seq: int, event_payload: dict[str, Any]) -> dict[str, Any]:
    """What a partner gets for a status change (``webhooks.status_payload``), from the event's payload."""
    data = {k: v for k, v in event_payload.items() if k not in ("actor", "owner")}
    return {"type": "order.status_changed", "order_id": str(order_id), "seq": seq, **data}


# --- create -------------------------------------------------------------------------------------

async def create_order(db: Database, principal: Principal, alloy: str, idempotency_key: str | None,
                       correlation_id: str | None = None) -> tuple[dict[str, Any], bool]:
    """(the order's view, created now). A repeated Idempotency-Key answers with the first order."""
    owner = Owner.of(principal)
    owner_id = uuid.UUID(owner.id)
    idempotency_key = idempotency_key or None  # an empty header is no key
    fingerprint = _fingerprint(alloy) if idempotency_key else None
    actor = principal.actor
    for _ in range(ATTEMPTS):
        order_id, now = uuid.uuid4(), utcnow()
        uow = StatementUnitOfWork(db)
        envelope = status_envelope(producer=SERVICE, order_id=order_id, seq=1, correlation_id=correlation_id,
                                   change=StatusChanged(status=S.INITIATED, actor=actor, at=now, alloy=alloy,
                                                        created_at=now, owner=Party(kind=owner.kind, id=owner.id,
                                                                                    name=owner.name)))
        message = uow.emit(envelope)
        uow.after_commit(_count_creation)
        uow.notify_status(None, S.INITIATED.value)
        args = (order_id, owner.kind, owner_id, owner.name, alloy, now, actor, *message_args(message),
                uuid.uuid4(), webhook_payload(order_id, 1, envelope.payload))
        if idempotency_key is None:
            created = await uow.commit(CREATE_SQL, *args)
        else:
            created = await uow.commit(CREATE_WITH_KEY_SQL, *args, idempotency_key, fingerprint)
        if created is not None:
            row = {
                "id": order_id, "owner_kind": owner.kind, "owner_id": owner_id, "status": S.INITIATED.value,
                "seq": 1, "alloy": alloy, "created_at": now, "updated_at": now, "status_since": now,
                "model": None, "quote": None, "failure": None, "progress": None, "tracking_number": None,
                "carrier": None, "history": [(S.INITIATED.value, now, actor)], "delays": None,
            }
            recent_rows(db).remember(row)
            return view_of(row, now), True
        first = await (await db.raw()).fetchrow(REPLAY_SQL, owner.kind, owner_id, idempotency_key)
        if first is None:
            continue  # the key's holder rolled back or its order is gone: claim the key again
        if first["request_hash"] != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "This Idempotency-Key was already used with a different request body.")
        return view_of(dict(first)), False
    raise ApiError(409, "conflict", "The request conflicted with a concurrent one; retry it.")


@functools.lru_cache(maxsize=16)
def _fingerprint(alloy: str) -> str:
    """The create body's fingerprint (the body is only ``{"alloy": ...}``: one per alloy)."""
    return request_fingerprint({"alloy": alloy})


def _count_creation() -> None:
    metrics.ORDER_TRANSITIONS.labels(SERVICE, S.INITIATED.value).inc()


# --- transitions --------------------------------------------------------------------------------

async def _transition(db: Database, row: dict[str, Any], target: OrderStatus, change: StatusChanged,
                      sql: str, extra_args: tuple[Any, ...] = (), values: dict[str, Any] | None = None,
                      ) -> dict[str, Any] | None:
    """Move the order read as ``row`` to ``target`` in one statement; the new view, or None when the
    order changed since ``row`` was read (nothing was written)."""
    order_id, previous, at = row["id"], row["status"], change.at
    seq = row["seq"] + 1
    uow = StatementUnitOfWork(db)
    envelope = status_envelope(producer=SERVICE, order_id=order_id, seq=seq, change=change)
    message = uow.emit(envelope)
    spent = max((at - row["status_since"]).total_seconds(), 0.0) if row["status_since"] else None

    def _observe() -> None:
        metrics.ORDER_TRANSITIONS.labels(SERVICE, target.value).inc()
        if spent is not None:
            metrics.TIME_IN_STATUS.labels(SERVICE, previous).observe(spent)

    uow.after_commit(_observe)
    uow.notify_status(previous, target.value, order_id, seq)
    done = await uow.commit(sql, order_id, target.value, seq, at, previous, change.actor, *message_args(message),
                            uuid.uuid4(), webhook_payload(order_id, seq, envelope.payload), *extra_args)
    if done is None:
        return None
    written = {**row, **(values or {}), "status": target.value, "seq": seq, "updated_at": at, "status_since": at,
               "history": [*(row["history"] or ()), (target.value, at, change.actor)]}
    if target is S.FILE_UPLOADED:  # submitting is the client's next step
        recent_rows(db).remember(written)
    return view_of(written, at)


def _asked_to_confirm(row: dict[str, Any]) -> str | None:
    """What the order's pricing failure asked the customer to confirm ("scale"), if it asked."""
    details = (row["failure"] or {}).get("details") or {}
    confirm = details.get("confirm") if isinstance(details, dict) else None
    return confirm if isinstance(confirm, str) else None


async def submit(db: Database, principal: Principal, order_id: uuid.UUID,
                 confirm: tuple[str, ...] = ()) -> dict[str, Any]:
    """Submit the order for pricing, with what the customer confirms (``("scale",)``); the order's view.

    Submitting an order already submitted (or further on) changes nothing. A priced-and-refused order may
    be submitted again without a new upload only when its failure asked for a confirmation the customer
    gives; any other refusal needs a corrected model.
    """
    owner = Owner.of(principal)
    # A FILE_UPLOADED row this process just wrote, for the plain write below (its statement checks it).
    hint = recent_rows(db).take(order_id, owner, S.FILE_UPLOADED.value)
    for attempt in range(ATTEMPTS):
        row = hint if hint is not None and attempt == 0 else await fetch_order(db, order_id, owner)
        if row is None:
            raise not_found()
        status = S(row["status"])
        if status not in SUBMITTABLE:
            return view_of(row)  # already submitted: submitting again is a no-op
        if status is S.PRICE_CALCULATION_FAILED and row["model"]:
            asked = _asked_to_confirm(row)
            if asked is None:
                raise ApiError(409, "model_required",
                               "The model could not be priced; upload a corrected model before submitting again.",
                               details={"status": status.value, "failure": (row["failure"] or {}).get("code")})
            if asked not in confirm:
                raise ApiError(409, "confirmation_required",
                               f"Pricing needs you to confirm the model's {asked} first: submit again with "
                               f'{{"confirm": ["{asked}"]}}, or upload a corrected model.',
                               details={"status": status.value, "confirm": asked})
        elif status in (S.INITIATED, S.PRICE_CALCULATION_FAILED):
            raise ApiError(409, "model_required",
                           "Attach a valid 3D model before submitting (PUT /api/v1/orders/{id}/model).",
                           details={"status": status.value})
        check_transition(status, S.SUBMITTED, SERVICE)  # a cancelled order: 409 illegal_transition
        change = StatusChanged(status=S.SUBMITTED, previous_status=status, actor=principal.actor, at=utcnow(),
                               model=ModelRef.model_validate(row["model"]), alloy=row["alloy"],
                               confirm=sorted(set(confirm)) or None)
        view = await _transition(db, row, S.SUBMITTED, change, SUBMIT_SQL)
        if view is not None:
            return view
    raise ApiError(409, "conflict", "The order changed while it was being submitted; retry.")


async def attach_model(db: Database, principal: Principal, order_id: uuid.UUID, row: dict[str, Any],
                       model: ModelRef, model_json: dict[str, Any]) -> dict[str, Any]:
    """Attach a parsed, stored model to the order read as ``row``; the order's view.

    The same file again on a FILE_UPLOADED order (a retried upload) changes nothing."""
    owner = Owner.of(principal)
    current: dict[str, Any] | None = row
    for _ in range(ATTEMPTS):
        if current is None or not owned(current, owner):
            raise not_found()
        status = S(current["status"])
        if status is S.FILE_UPLOADED and (current["model"] or {}).get("sha256") == model.sha256:
            return view_of(current)
        if status not in UPLOADABLE:
            raise IllegalTransition(status, S.FILE_UPLOADED,
                                    f"the order is {status}: its model can no longer be changed")
        check_transition(status, S.FILE_UPLOADED, SERVICE)
        change = StatusChanged(status=S.FILE_UPLOADED, previous_status=status, actor=principal.actor, at=utcnow(),
                               model=model)
        view = await _transition(db, current, S.FILE_UPLOADED, change, UPLOAD_SQL, (model_json,),
                                 {"model": model_json, "failure": None, "quote": None, "progress": None})
        if view is not None:
            return view
        current = await fetch_order(db, order_id, owner)
    raise ApiError(409, "conflict", "The order changed while its model was being attached; retry.")

