"""Shop use cases; each is one unit of work, events leave through the outbox."""

from __future__ import annotations

import asyncio
import functools
import secrets
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from alexandrite.contracts.events import Envelope, ModelRef, StatusChanged, status_envelope
from alexandrite.contracts.order_status import CANCELLABLE, IllegalTransition, OrderStatus, owner_of
from alexandrite.kit import auth_failures
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.peers import Peers
from alexandrite.kit.revocation import revoke_subject
from alexandrite.kit.security import (
    Principal,
    hash_api_key,
    hash_password,
    needs_rehash,
    new_api_key,
    verify_password,
)
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.kit.tokens import issue_token
from alexandrite.models3d.formats import ModelFormatError
from alexandrite.orders.in_turn import TAIL_FIRST, InTurn
from alexandrite.orders.records import ensure_may_cancel, order_in_transit, record_transition
from alexandrite.shop import order_reads, order_writes, repository, webhooks
from alexandrite.shop.domain import LookalikeEmail, Owner, normalise_email
from alexandrite.shop.recent_rows import recent_rows
from alexandrite.shop.tables import customers, order_history, orders, partners
from alexandrite.shop.uploads import MODEL_EXTENSIONS, ParseSlots, facts_for_ref, inspect_model, parse_inline

SERVICE = "shop"
UPLOADABLE = order_writes.UPLOADABLE
S = OrderStatus


# --- accounts -----------------------------------------------------------------------------

@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _email(email: str) -> str:
    try:
        return normalise_email(email)
    except LookalikeEmail as error:
        raise ApiError(422, "email_lookalike", f"This e-mail address is not accepted: {error}.") from error


async def sign_up(db: Database, email: str, password: str, name: str) -> dict[str, Any]:
    email = _email(email)
    customer_id = uuid.uuid4()
    password_hash = await asyncio.to_thread(hash_password, password)
    async with UnitOfWork(db) as uow:
        try:
            await uow.session.execute(
                customers.insert().values(id=customer_id, email=email, name=name.strip(), password_hash=password_hash)
            )
            await uow.commit()
        except IntegrityError as error:
            raise ApiError(409, "email_taken", "An account with this e-mail already exists; sign in.") from error
    return {"id": customer_id, "email": email, "name": name.strip()}


async def sign_in(db: Database, settings: Settings, email: str, password: str) -> dict[str, Any]:
    async with db.sessions() as session:
        row = await repository.customer_by_email(session, _email(email))
    # an unknown address costs the same hash as a known one: the answer time does not tell which exists
    stored = row.password_hash if row is not None else _dummy_hash()
    ok = await asyncio.to_thread(verify_password, password, stored) and row is not None
    if not ok:
        raise ApiError(401, "invalid_credentials", "The e-mail or the password is wrong.")
    if needs_rehash(stored):  # scrypt (or weaker argon2) hashes become argon2id on a successful sign-in
        await _store_password(db, row.id, password)
    principal = Principal(role="customer", subject=str(row.id), name=row.name)
    token = issue_token(settings, principal, settings.auth.token_ttl_seconds, audience=(SERVICE,))
    return {"access_token": token, "token_type": "bearer", "expires_in": settings.auth.token_ttl_seconds}


async def guarded_sign_in(state: Any, client: str, email: str, password: str, kind: str) -> dict[str, Any]:
    """Sign-in behind the failed-authentication limit (API and page alike): 429 past it, even for the
    right password; only failures count."""
    where = (state.redis, state.settings.redis.prefix, SERVICE, kind, client, email.strip().lower())
    limits = auth_failures.limits_of(state.settings)
    await auth_failures.refuse_if_locked(*where, limits=limits)
    try:
        return await sign_in(state.db, state.settings, email, password)
    except ApiError as error:
        if error.status == 401:
            await auth_failures.record_failure(*where, limits=limits)
        raise


async def _store_password(db: Database, customer_id: uuid.UUID, password: str) -> None:
    password_hash = await asyncio.to_thread(hash_password, password)
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            customers.update().where(customers.c.id == customer_id).values(password_hash=password_hash))
        await uow.commit()


async def change_password(state: Any, principal: Principal, current: str, new: str) -> None:
    """New password; every token of the customer issued so far stops working (sign in again)."""
    async with state.db.sessions() as session:
        row = (await session.execute(customers.select().where(customers.c.id == uuid.UUID(principal.subject)))).first()
    if row is None or not await asyncio.to_thread(verify_password, current, row.password_hash):
        raise ApiError(401, "invalid_credentials", "The current password is wrong.")
    await _store_password(state.db, row.id, new)
    settings = state.settings
    await revoke_subject(state.redis, settings.redis.prefix, "customer", principal.subject,
                         settings.auth.max_token_ttl_seconds)


async def create_partner(db: Database, name: str, *, plan: str = "standard", webhook_url: str | None = None) -> str:
    """Create a partner account; returns its API key (only its hash is stored)."""
    key = new_api_key()
    async with UnitOfWork(db) as uow:
        try:
            await uow.session.execute(
                partners.insert().values(
                    id=uuid.uuid4(), name=name, key_hash=hash_api_key(key), key_prefix=key[:10], plan=plan,
                    webhook_url=webhook_url,
                )
            )
            await uow.commit()
        except IntegrityError as error:
            raise ValueError(f"a partner named {name!r} already exists") from error
    return key


async def partner_principal(db: Database, api_key: str) -> Principal | None:
    async with db.sessions() as session:
        row = await repository.partner_by_key_hash(session, hash_api_key(api_key))
    if row is None:
        return None
    return Principal(role="partner", subject=str(row.id), name=row.name)


# --- orders -------------------------------------------------------------------------------

async def _emit(uow: UnitOfWork, order_id: uuid.UUID, seq: int, change: StatusChanged,
                correlation_id: str | None = None) -> None:
    envelope = status_envelope(producer=SERVICE, order_id=order_id, seq=seq, change=change,
                               correlation_id=correlation_id)
    uow.emit(envelope)
    await webhooks.enqueue(uow, order_id, envelope.type, webhooks.status_payload(order_id, seq, change))


async def create_order(db: Database, principal: Principal, alloy: str, idempotency_key: str | None,
                       correlation_id: str | None = None) -> tuple[uuid.UUID, bool]:
    """Returns (order id, created now). A repeated Idempotency-Key returns the first order."""
    view, created = await order_writes.create_order(db, principal, alloy, idempotency_key, correlation_id)
    return view["id"], created


async def attach_model(db: Database, storage: LocalStorage, settings: Settings, principal: Principal,
                       order_id: uuid.UUID, data: bytes, filename: str | None,
                       slots: ParseSlots | None = None) -> dict[str, Any]:
    """Check, parse and store the model, then attach it (one statement); returns the order's view."""
    owner = Owner.of(principal)
    # The row this process created a moment ago, as a hint for the write (which checks it); else a read.
    row = recent_rows(db).take(order_id, owner, S.INITIATED.value) or await order_reads.fetch_order(
        db, order_id, owner)
    if row is None:
        raise not_found()
    if S(row["status"]) not in UPLOADABLE:
        raise IllegalTransition(S(row["status"]), S.FILE_UPLOADED,
                                f"the order is {row['status']}: its model can no longer be changed")
    try:
        if slots is None:
            facts = await _inspect(data, filename, settings)
        else:
            async with slots.slot():
                facts = await _inspect(data, filename, settings)
    except ModelFormatError as error:
        raise ApiError(422, error.code, error.message) from error
    key = LocalStorage.key_for(facts["sha256"], MODEL_EXTENSIONS.get(facts["format"], "bin"))  # hashed once
    await storage.put(key, data)  # content-addressed: a later failure leaves no half-state
    model = ModelRef(key=key, filename=(filename or "")[:255] or None, **facts_for_ref(facts))
    model_json = {**model.model_dump(mode="json"),
                  **{k: facts[k] for k in ("size_mm", "volume_mm3", "watertight")}}
    return await order_writes.attach_model(db, principal, order_id, row, model, model_json)


async def _inspect(data: bytes, filename: str | None, settings: Settings) -> dict[str, Any]:
    if parse_inline(data):  # a small binary STL: ~1 ms of work, cheaper here than a thread hop under load
        return inspect_model(data, filename, settings.uploads.limits)
    return await asyncio.to_thread(inspect_model, data, filename, settings.uploads.limits)


async def submit(db: Database, principal: Principal, order_id: uuid.UUID,
                 confirm: tuple[str, ...] = ()) -> dict[str, Any]:
    """Submit the order for pricing (see :func:`order_writes.submit`); returns the order's view."""
    return await order_writes.submit(db, principal, order_id, confirm)


async def cancel_locally(db: Database, order_id: uuid.UUID, *, requested_by: str, actor: str,
                         reason: str | None, owner: Owner | None = None) -> str:
    """Cancel an order the shop owns; returns the new status (raises 409 / not_owner)."""
    async with UnitOfWork(db) as uow:
        row = await repository.get_owned_order(uow.session, order_id, owner, for_update=True)
        if row is None:
            raise not_found()
        ensure_may_cancel(S(row.status), SERVICE, requested_by)
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.CANCELLED, by=actor,
            requested_by=requested_by, values={"progress": None},
        )
        await _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.CANCELLED, previous_status=transition.previous, actor=actor, at=transition.at, reason=reason,
        ))
        await uow.commit()
    return S.CANCELLED.value


async def cancel(db: Database, peers: Peers, principal: Principal, order_id: uuid.UUID,
                 reason: str | None) -> str:
    """Customer cancel: done here while the shop owns the order, else by its current owner."""
    owner = Owner.of(principal)
    async with db.sessions() as session:
        row = await repository.get_owned_order(session, order_id, owner)
    if row is None:
        raise not_found()
    status = S(row.status)
    if owner_of(status) == SERVICE or status not in CANCELLABLE:
        return await cancel_locally(db, order_id, requested_by=SERVICE, actor=principal.actor, reason=reason,
                                    owner=owner)
    try:
        answer = await peers.post(owner_of(status), f"/internal/v1/orders/{order_id}/cancel",  # type: ignore[arg-type]
                                  {"requested_by": SERVICE, "actor": principal.actor, "reason": reason})
    except ApiError as error:
        if error.status == 404 or error.code == "not_owner":
            raise order_in_transit() from error
        raise
    return str(answer.get("status", S.CANCELLED.value))


# --- events from the other services --------------------------------------------------------

def _event_values(change: StatusChanged) -> dict[str, Any]:
    """Columns of the shop's order that another service's event updates besides the status."""
    values: dict[str, Any] = {}
    if change.status is S.PRICE_CALCULATING:
        values["progress"] = change.progress.model_dump() if change.progress else None
    elif change.status is S.PRICE_CALCULATED:
        values.update(quote=change.quote, progress=None, failure=None)
    elif change.status is S.PRICE_CALCULATION_FAILED:
        values.update(failure=change.failure.model_dump(mode="json", exclude_none=True) if change.failure else None,
                      progress=None)
    elif change.status is S.SHIPPED:
        values.update(tracking_number=change.tracking_number, carrier=change.carrier)
    elif change.status is S.CANCELLED:
        values["progress"] = None
    return values


# The partner's webhook delivery of an event in its turn: $12 delivery id, $13 payload (event type: $10).
_DELIVERY_TAIL = webhooks.delivery_cte("w", f"${TAIL_FIRST}", "$10", f"${TAIL_FIRST + 1}")


def in_turn(envelope: Envelope, change: StatusChanged) -> InTurn:
    """An event in its turn as one statement (orders/in_turn.py): the order's columns, and the partner's
    webhook delivery that :func:`apply_event` queues."""
    return InTurn(history=order_history, values=_event_values(change), returning=", o.owner_kind, o.owner_id",
                  tail=_DELIVERY_TAIL, selected=f", {webhooks.DISPATCHER_WAKEUP} AS dispatcher_woken",
                  tail_args=(uuid.uuid4(), webhooks.status_payload(envelope.order_id, envelope.seq, change)))


async def apply_event(uow: UnitOfWork, envelope: Any, change: StatusChanged) -> None:
    await record_transition(
        uow, orders, order_history, service=SERVICE, order_id=envelope.order_id, target=change.status,
        by=change.actor, requested_by=envelope.producer, seq=envelope.seq, at=change.at,
        values=_event_values(change),
    )
    await webhooks.enqueue(uow, envelope.order_id, envelope.type,
                           webhooks.status_payload(envelope.order_id, envelope.seq, change))
