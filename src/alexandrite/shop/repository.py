"""Shop queries."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.kit.pagination import newest_first
from alexandrite.shop.domain import Owner
from alexandrite.shop.tables import customers, idempotency_keys, orders, partners


async def get_order(session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False) -> Any:
    stmt = select(orders).where(orders.c.id == order_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).first()


async def get_owned_order(session: AsyncSession, order_id: uuid.UUID, owner: Owner | None,
                          *, for_update: bool = False) -> Any:
    """The order if ``owner`` may see it (None = staff/service: any order)."""
    row = await get_order(session, order_id, for_update=for_update)
    if row is None:
        return None
    if owner is not None and (row.owner_kind != owner.kind or str(row.owner_id) != owner.id):
        return None  # someone else's order: indistinguishable from a missing one
    return row


async def list_orders(session: AsyncSession, owner: Owner, *, statuses: list[str] | None,
                      cursor: str | None, limit: int) -> list[Any]:
    stmt = select(
        orders.c.id, orders.c.status, orders.c.alloy, orders.c.created_at, orders.c.updated_at, orders.c.quote
    ).where(orders.c.owner_kind == owner.kind, orders.c.owner_id == uuid.UUID(owner.id))
    if statuses:
        stmt = stmt.where(orders.c.status.in_(statuses))
    stmt = newest_first(stmt, orders.c.created_at, orders.c.id, cursor, limit)
    return list((await session.execute(stmt)).all())


async def find_idempotent(session: AsyncSession, owner: Owner, key: str) -> Any:
    return (
        await session.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.owner_kind == owner.kind,
                idempotency_keys.c.owner_id == uuid.UUID(owner.id),
                idempotency_keys.c.key == key,
            )
        )
    ).first()


async def customer_by_email(session: AsyncSession, email: str) -> Any:
    return (await session.execute(select(customers).where(customers.c.email == email))).first()


async def partner_by_key_hash(session: AsyncSession, key_hash: str) -> Any:
    return (
        await session.execute(select(partners).where(partners.c.key_hash == key_hash, partners.c.active))
    ).first()
