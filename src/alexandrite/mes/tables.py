"""MES database: the production projection of every order, pricing jobs, history, outbox, inbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from alexandrite.contracts.order_status import IN_WORK
from alexandrite.kit.messaging.tables import define_inbox, define_outbox
from alexandrite.orders.records import define_delays, define_history

metadata = MetaData()


def _order_columns() -> list[Column]:
    return [
        Column("id", Uuid, nullable=False),
        Column("alloy", Text, nullable=True),
        Column("status", Text, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("owner_kind", Text, nullable=False),
        Column("owner_name", Text, nullable=False),
        Column("model", JSONB, nullable=True),
        Column("quote", JSONB, nullable=True),
        Column("failure", JSONB, nullable=True),
        Column("progress", JSONB, nullable=True),
        Column("operator", Text, nullable=True),
        Column("tracking_number", Text, nullable=True),
        Column("carrier", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("status_since", DateTime(timezone=True), nullable=False),
        Column("approved_at", DateTime(timezone=True), nullable=True),
    ]


# Partitioned by creation month (see partitions.py); the key must include the partition column.
production_orders = Table(
    "production_orders",
    metadata,
    *_order_columns(),
    PrimaryKeyConstraint("id", "created_at", name="production_orders_pkey"),
    postgresql_partition_by="RANGE (created_at)",
)
# Any status filter, newest first, keyset pagination on (created_at, id).
Index(
    "ix_production_orders_status_newest",
    production_orders.c.status,
    production_orders.c.created_at.desc(),
    production_orders.c.id.desc(),
)
# The dashboard: the few orders in work, newest first; status carried for the counts per status.
Index(
    "ix_production_orders_in_work",
    production_orders.c.created_at.desc(),
    production_orders.c.id.desc(),
    postgresql_include=["status"],
    postgresql_where=production_orders.c.status.in_([s.value for s in IN_WORK]),
)

# The stage clock: in-work orders of one status, longest in it first (= most overdue first, one SLA per
# status); the dashboard's "late first" and "by stage" orders merge one scan of it per status.
Index(
    "ix_production_orders_in_work_clock",
    production_orders.c.status,
    production_orders.c.status_since,
    production_orders.c.id,
    postgresql_where=production_orders.c.status.in_([s.value for s in IN_WORK]),
)

# Orders in each in-work status, and of those the ones in it since before ``late_before``, kept by a
# trigger on production_orders (see the migrations); the SLA watchdog moves ``late_before``.
production_status_counts = Table(
    "production_status_counts",
    metadata,
    Column("status", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("late", BigInteger, nullable=False, server_default="0"),
    Column("late_before", DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")),
)

# The stage clock of every order in work, one row each, kept by the same trigger: a few thousand rows
# in one table, so the late counts' ranges are one index probe each (mes/stage_counts.py).
production_in_work = Table(
    "production_in_work",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    Column("status", Text, nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
    Index("ix_production_in_work_clock", "status", "status_since"),
)

# Months detached from the live table by ``alexandrite maintain`` (still readable by id).
archive_metadata = MetaData(schema="archive")
archived_production_orders = Table(
    "production_orders",
    archive_metadata,
    *_order_columns(),
    PrimaryKeyConstraint("id", "created_at", name="archived_production_orders_pkey"),
    postgresql_partition_by="RANGE (created_at)",
)

JOB_STATES = ("queued", "running", "priced", "failed", "cancelled")

pricing_jobs = Table(
    "pricing_jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    # No foreign key: production_orders is partitioned (its key includes created_at).
    Column("order_id", Uuid, nullable=False),
    Column("submit_seq", Integer, nullable=False),  # seq of the SUBMITTED event that asked for it
    Column("state", Text, nullable=False, server_default="queued"),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("worker", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("confirm", JSONB, nullable=True),  # what the customer confirmed on submitting: ["scale"]
    UniqueConstraint("order_id", "submit_seq", name="uq_pricing_jobs_order_submit"),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in JOB_STATES) + ")", name="ck_pricing_jobs_state"
    ),
)
# Queue position: active jobs enqueued before a given one.
Index("ix_pricing_jobs_state_enqueued", pricing_jobs.c.state, pricing_jobs.c.enqueued_at)
# ETA: the average duration of the latest finished jobs.
Index(
    "ix_pricing_jobs_finished",
    pricing_jobs.c.finished_at.desc(),
    postgresql_where=text("duration_ms IS NOT NULL"),
)

# Stage SLA breaches found by the watchdog: one row per order and stage, so one notice each.
order_delays = define_delays(metadata, None)  # production_orders is partitioned: no foreign key

order_history = define_history(metadata)
outbox = define_outbox(metadata)
inbox = define_inbox(metadata)
