"""Keyset pagination over (created_at DESC, id DESC) with opaque cursors."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, tuple_
from sqlalchemy.sql.elements import ColumnElement

from alexandrite.kit.errors import ApiError
from alexandrite.kit.instants import EARLIEST, LATEST, in_range


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(order_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        position = datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, TypeError, AttributeError, OverflowError) as error:
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned.") from error
    if not in_range(position[0]):
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned.")
    return position


def keyset_after(created_col: Any, id_col: Any, cursor: str | None) -> ColumnElement[bool] | None:
    if not cursor:
        return None
    created_at, ident = decode_cursor(cursor)
    return tuple_(created_col, id_col) < tuple_(created_at, ident)


def newest_first(stmt: Select[Any], created_col: Any, id_col: Any, cursor: str | None, limit: int) -> Select[Any]:
    condition = keyset_after(created_col, id_col, cursor)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)


def page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """Split the limit+1 fetched rows into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        return rows, encode_cursor(last.created_at, last.id)
    return rows, None


__all__ = ["EARLIEST", "LATEST", "and_", "decode_cursor", "encode_cursor", "in_range", "keyset_after", "newest_first",
           "or_", "page"]
