"""Rows remembered as hints for an order's next write: taken once, while fresh, by their owner only."""

from __future__ import annotations

import uuid

from alexandrite.shop.domain import Owner
from alexandrite.shop.recent_rows import RecentRows

ALICE = Owner(kind="customer", id=str(uuid.uuid4()), name="Alice")
BOB = Owner(kind="customer", id=str(uuid.uuid4()), name="Bob")


def row_of(owner: Owner, status: str = "INITIATED") -> dict[str, object]:
    return {"id": uuid.uuid4(), "owner_kind": owner.kind, "owner_id": uuid.UUID(owner.id), "status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_row_is_taken_once_and_only_by_its_owner_or_staff() -> None:
    rows = RecentRows()
    mine, theirs = row_of(ALICE), row_of(ALICE)
    rows.remember(mine)
    rows.remember(theirs)
    assert rows.take(mine["id"], ALICE) is mine
    assert rows.take(mine["id"], ALICE) is None  # used once
    assert rows.take(theirs["id"], BOB) is None  # someone else's: no hint, and it is gone
    assert rows.take(theirs["id"], ALICE) is None
    other = row_of(BOB)
    rows.remember(other)
    assert rows.take(other["id"], None) is other  # staff and services see every order
    assert rows.take(uuid.uuid4(), ALICE) is None


def test_rows_expire_and_the_oldest_go_first() -> None:
    clock = Clock()
    rows = RecentRows(capacity=3, ttl_seconds=30.0, clock=clock)
    first = row_of(ALICE)
    rows.remember(first)
    clock.now += 30.5
    assert rows.take(first["id"], ALICE) is None  # too old to trust even as a hint
    kept = [row_of(ALICE) for _ in range(4)]
    for row in kept:
        rows.remember(row)
    assert len(rows) == 3
    assert rows.take(kept[0]["id"], ALICE) is None  # pushed out by the fourth
    assert [rows.take(row["id"], ALICE) for row in kept[1:]] == kept[1:]


def test_remembering_a_row_again_replaces_it_and_makes_it_newest() -> None:
    rows = RecentRows(capacity=2)
    a, b = row_of(ALICE), row_of(ALICE)
    rows.remember(a)
    rows.remember(b)
    uploaded = {**a, "status": "FILE_UPLOADED"}
    rows.remember(uploaded)  # a's newer row: b is now the oldest
    rows.remember(row_of(ALICE))
    assert rows.take(b["id"], ALICE) is None
    assert rows.take(a["id"], ALICE) is uploaded


def test_a_row_in_another_status_than_the_write_starts_from_is_no_hint() -> None:
    rows = RecentRows()
    created = row_of(ALICE)
    rows.remember(created)
    assert rows.take(created["id"], ALICE, "FILE_UPLOADED") is None  # and it is gone
    assert rows.take(created["id"], ALICE) is None
    rows.remember(created)
    assert rows.take(created["id"], ALICE, "INITIATED") is created
