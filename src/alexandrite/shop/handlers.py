"""Shop use cases; each is one unit of work, events leave through the outbox."""

from __future__ import annotations

import asyncio
import functools
import secrets
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from alexandrite.contracts.events import ModelRef, Party, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import CANCELLABLE, IllegalTransition, OrderStatus, owner_of
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.peers import Peers
from alexandrite.kit.security import Principal, hash_api_key, hash_password, issue_token, new_api_key, verify_password
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.models3d.formats import ModelFormatError
from alexandrite.orders.records import ensure_may_cancel, order_in_transit, record_creation, record_transition
from alexandrite.shop import repository, webhooks
from alexandrite.shop.domain import LookalikeEmail, Owner, normalise_email, request_fingerprint
from alexandrite.shop.tables import customers, idempotency_keys, order_history, orders, partners
from alexandrite.shop.uploads import MODEL_EXTENSIONS, ParseSlots, facts_for_ref, inspect_model

SERVICE = "shop"
UPLOADABLE = frozenset({OrderStatus.INITIATED, OrderStatus.FILE_UPLOADED, OrderStatus.PRICE_CALCULATION_FAILED})
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
    principal = Principal(role="customer", subject=str(row.id), name=row.name)
    token = issue_token(settings.auth.secret_key, principal, settings.auth.token_ttl_seconds)
    return {"access_token": token, "token_type": "bearer", "expires_in": settings.auth.token_ttl_seconds}


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
    owner = Owner.of(principal)
    fingerprint = request_fingerprint({"alloy": alloy})
    for _ in range(3):
        async with UnitOfWork(db) as uow:
            if idempotency_key:
                existing = await repository.find_idempotent(uow.session, owner, idempotency_key)
                if existing is not None:
                    if existing.request_hash != fingerprint:
                        raise ApiError(
                            422, "idempotency_key_reused",
                            "This Idempotency-Key was already used with a different request body.",
                        )
                    return existing.order_id, False
            order_id = uuid.uuid4()
            now = utcnow()
            transition = await record_creation(
                uow, orders, order_history, service=SERVICE, order_id=order_id, status=S.INITIATED,
                by=principal.actor, at=now,
                values={"owner_kind": owner.kind, "owner_id": uuid.UUID(owner.id), "owner_name": owner.name,
                        "alloy": alloy},
            )
            if idempotency_key:
                try:
                    await uow.session.execute(
                        idempotency_keys.insert().values(
                            owner_kind=owner.kind, owner_id=uuid.UUID(owner.id), key=idempotency_key,
                            request_hash=fingerprint, order_id=order_id,
                        )
                    )
                except IntegrityError:
                    continue  # the same key won a race in another request: read its order
            await _emit(uow, order_id, transition.seq, StatusChanged(
                status=S.INITIATED, actor=principal.actor, at=now, alloy=alloy, created_at=now,
                owner=Party(kind=owner.kind, id=owner.id, name=owner.name),
            ), correlation_id)
            try:
                await uow.commit()
            except IntegrityError:
                continue  # the same key won a race in another request: read its order
            return order_id, True
    raise ApiError(409, "conflict", "The request conflicted with a concurrent one; retry it.")


async def attach_model(db: Database, storage: LocalStorage, settings: Settings, principal: Principal,
                       order_id: uuid.UUID, data: bytes, filename: str | None,
                       slots: ParseSlots | None = None) -> None:
    owner = Owner.of(principal)
    async with db.sessions() as session:
        row = await repository.get_owned_order(session, order_id, owner)
    if row is None:
        raise not_found()
    if S(row.status) not in UPLOADABLE:
        raise IllegalTransition(S(row.status), S.FILE_UPLOADED,
                                f"the order is {row.status}: its model can no longer be changed")
    try:
        if slots is None:
            facts = await asyncio.to_thread(inspect_model, data, filename, settings.uploads.limits)
        else:
            async with slots.slot():
                facts = await asyncio.to_thread(inspect_model, data, filename, settings.uploads.limits)
    except ModelFormatError as error:
        raise ApiError(422, error.code, error.message) from error
    key, _ = LocalStorage.model_key(data, MODEL_EXTENSIONS.get(facts["format"], "bin"))
    await storage.put(key, data)  # content-addressed: a later failure leaves no half-state
    model = ModelRef(key=key, filename=(filename or "")[:255] or None, **facts_for_ref(facts))
    async with UnitOfWork(db) as uow:
        current = await repository.get_owned_order(uow.session, order_id, owner, for_update=True)
        if current is None:
            raise not_found()
        if current.status == S.FILE_UPLOADED.value and (current.model or {}).get("sha256") == facts["sha256"]:
            return  # the same file again (a retried upload): nothing changes
        model_json = {**model.model_dump(mode="json"),
                      **{k: facts[k] for k in ("size_mm", "volume_mm3", "watertight")}}
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.FILE_UPLOADED,
            by=principal.actor, requested_by=SERVICE,
            values={"model": model_json, "failure": None, "quote": None, "progress": None},
        )
        await _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.FILE_UPLOADED, previous_status=transition.previous, actor=principal.actor,
            at=transition.at, model=model,
        ))
        await uow.commit()


def _asked_to_confirm(row: Any) -> str | None:
    """What the order's pricing failure asked the customer to confirm ("scale"), if it asked."""
    details = (row.failure or {}).get("details") or {}
    confirm = details.get("confirm") if isinstance(details, dict) else None
    return confirm if isinstance(confirm, str) else None


async def submit(db: Database, principal: Principal, order_id: uuid.UUID, confirm: tuple[str, ...] = ()) -> None:
    """Submit the order for pricing, with what the customer confirms (``("scale",)``: an unusual size is right).

    A priced-and-refused order may be submitted again without a new upload only when its failure asked
    for a confirmation and the customer gives it; any other refusal needs a corrected model.
    """
    owner = Owner.of(principal)
    async with UnitOfWork(db) as uow:
        row = await repository.get_owned_order(uow.session, order_id, owner, for_update=True)
        if row is None:
            raise not_found()
        status = S(row.status)
        if status not in (S.FILE_UPLOADED, S.INITIATED, S.PRICE_CALCULATION_FAILED) and status is not S.CANCELLED:
            return  # already submitted: submitting again is a no-op
        if status is S.PRICE_CALCULATION_FAILED and row.model:
            asked = _asked_to_confirm(row)
            if asked is None:
                raise ApiError(409, "model_required",
                               "The model could not be priced; upload a corrected model before submitting again.",
                               details={"status": status.value, "failure": (row.failure or {}).get("code")})
            if asked not in confirm:
                raise ApiError(409, "confirmation_required",
                               f"Pricing needs you to confirm the model's {asked} first: submit again with "
                               f'{{"confirm": ["{asked}"]}}, or upload a corrected model.',
                               details={"status": status.value, "confirm": asked})
        elif status in (S.INITIATED, S.PRICE_CALCULATION_FAILED):
            raise ApiError(409, "model_required",
                           "Attach a valid 3D model before submitting (PUT /api/v1/orders/{id}/model).",
                           details={"status": status.value})
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.SUBMITTED,
            by=principal.actor, requested_by=SERVICE,
        )
        await _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.SUBMITTED, previous_status=transition.previous, actor=principal.actor, at=transition.at,
            model=ModelRef.model_validate(row.model), alloy=row.alloy, confirm=sorted(set(confirm)) or None,
        ))
        await uow.commit()


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

async def apply_event(uow: UnitOfWork, envelope: Any, change: StatusChanged) -> None:
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
    await record_transition(
        uow, orders, order_history, service=SERVICE, order_id=envelope.order_id, target=change.status,
        by=change.actor, requested_by=envelope.producer, seq=envelope.seq, at=change.at, values=values,
    )
    await webhooks.enqueue(uow, envelope.order_id, envelope.type,
                           webhooks.status_payload(envelope.order_id, envelope.seq, change))
