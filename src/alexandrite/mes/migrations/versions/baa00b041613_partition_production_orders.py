"""production orders partitioned by creation month; dashboard index on the in-work statuses

Revision ID: baa00b041613
Revises: afad35e8282b
Create Date: 2026-11-25 10:55:00

The table is rebuilt as ``PARTITION BY RANGE (created_at)`` with primary key (id, created_at),
its rows moved over, and the old one dropped. ``pricing_jobs.order_id`` and
``order_delays.order_id`` can no longer carry a foreign key (a key on a partitioned table must
include the partition column); both are only written for an order the service already holds. ``archive.production_orders``
receives detached months (``alexandrite maintain``). ``production_status_counts`` holds the
number of orders in each in-work status, kept by a trigger in the same transaction as the change
(the dashboard's counts without counting thousands of rows on every request).
"""
from datetime import UTC, datetime
from typing import Sequence, Union

from alembic import op

from alexandrite.mes.partitions import add_months, create_partition_sql, month_start

revision: str = 'baa00b041613'
down_revision: Union[str, Sequence[str], None] = 'afad35e8282b'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IN_WORK = "('MANUFACTURING_APPROVED', 'MANUFACTURING_STARTED', 'MANUFACTURING_COMPLETED', 'PACKAGING')"
COLUMNS = """
    id uuid NOT NULL,
    alloy text,
    status text NOT NULL,
    seq integer NOT NULL,
    owner_kind text NOT NULL,
    owner_name text NOT NULL,
    model jsonb,
    quote jsonb,
    failure jsonb,
    progress jsonb,
    operator text,
    tracking_number text,
    carrier text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    status_since timestamptz NOT NULL,
    approved_at timestamptz
"""
IN_WORK_LIST = ("MANUFACTURING_APPROVED", "MANUFACTURING_STARTED", "MANUFACTURING_COMPLETED", "PACKAGING")
MONTHS_AHEAD = 3
COUNTS_FUNCTION = """
CREATE FUNCTION production_status_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE production_status_counts SET n = n - 1 WHERE status = OLD.status;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    UPDATE production_status_counts SET n = n + 1 WHERE status = NEW.status;
  END IF;
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE pricing_jobs DROP CONSTRAINT IF EXISTS pricing_jobs_order_id_fkey")
    op.execute("ALTER TABLE order_delays DROP CONSTRAINT IF EXISTS order_delays_order_id_fkey")
    op.execute("ALTER TABLE production_orders RENAME TO production_orders_unpartitioned")
    op.execute("ALTER INDEX production_orders_pkey RENAME TO production_orders_unpartitioned_pkey")
    op.execute("DROP INDEX ix_production_orders_status_newest")
    op.execute(f"CREATE TABLE production_orders ({COLUMNS}, CONSTRAINT production_orders_pkey "
               "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")
    op.execute("CREATE TABLE production_orders_default PARTITION OF production_orders DEFAULT")
    oldest = bind.exec_driver_sql("SELECT min(created_at) FROM production_orders_unpartitioned").scalar()
    now = month_start(datetime.now(UTC).date())
    month = month_start(oldest) if oldest is not None and oldest.date() < now else now
    last = add_months(now, MONTHS_AHEAD)
    while month <= last:
        op.execute(create_partition_sql(month))
        month = add_months(month, 1)
    # Any status, newest first (keyset on created_at, id).
    op.execute("CREATE INDEX ix_production_orders_status_newest ON production_orders "
               "(status, created_at DESC, id DESC)")
    # The dashboard: only the few thousand orders in work, newest first, status carried for the counts.
    op.execute("CREATE INDEX ix_production_orders_in_work ON production_orders (created_at DESC, id DESC) "
               f"INCLUDE (status) WHERE status IN {IN_WORK}")
    op.execute("INSERT INTO production_orders SELECT id, alloy, status, seq, owner_kind, owner_name, model, quote, "
               "failure, progress, operator, tracking_number, carrier, created_at, updated_at, status_since, "
               "approved_at FROM production_orders_unpartitioned")
    op.execute("DROP TABLE production_orders_unpartitioned")
    op.execute("CREATE TABLE production_status_counts (status text PRIMARY KEY, n bigint NOT NULL)")
    op.execute(f"INSERT INTO production_status_counts SELECT s, 0 FROM unnest(ARRAY{list(IN_WORK_LIST)}) AS s")
    op.execute("UPDATE production_status_counts c SET n = o.n FROM (SELECT status, count(*) AS n FROM "
               f"production_orders WHERE status IN {IN_WORK} GROUP BY status) o WHERE o.status = c.status")
    op.execute(COUNTS_FUNCTION)
    for event, when in (("INSERT", f"NEW.status IN {IN_WORK}"), ("DELETE", f"OLD.status IN {IN_WORK}"),
                        ("UPDATE OF status", f"OLD.status IS DISTINCT FROM NEW.status AND "
                                             f"(OLD.status IN {IN_WORK} OR NEW.status IN {IN_WORK})")):
        name = "production_status_counts_" + event.split()[0].lower()
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON production_orders FOR EACH ROW "
                   f"WHEN ({when}) EXECUTE FUNCTION production_status_counts_apply()")
    op.execute("CREATE SCHEMA IF NOT EXISTS archive")
    op.execute(f"CREATE TABLE archive.production_orders ({COLUMNS}, CONSTRAINT archived_production_orders_pkey "
               "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE production_status_counts")
    op.execute("DROP TABLE archive.production_orders CASCADE")
    op.execute("DROP SCHEMA IF EXISTS archive CASCADE")
    op.execute("ALTER TABLE production_orders RENAME TO production_orders_partitioned")
    op.execute("ALTER INDEX production_orders_pkey RENAME TO production_orders_partitioned_pkey")
    op.execute("ALTER INDEX ix_production_orders_status_newest RENAME TO ix_production_orders_status_newest_p")
    op.execute(f"CREATE TABLE production_orders ({COLUMNS}, CONSTRAINT production_orders_pkey PRIMARY KEY (id))")
    op.execute("INSERT INTO production_orders SELECT * FROM production_orders_partitioned")
    op.execute("DROP TABLE production_orders_partitioned CASCADE")
    op.execute("DROP FUNCTION production_status_counts_apply()")
    op.execute("CREATE INDEX ix_production_orders_status_newest ON production_orders "
               "(status, created_at DESC, id DESC)")
    op.execute("ALTER TABLE pricing_jobs ADD CONSTRAINT pricing_jobs_order_id_fkey FOREIGN KEY (order_id) "
               "REFERENCES production_orders (id) ON DELETE CASCADE")
    op.execute("ALTER TABLE order_delays ADD CONSTRAINT order_delays_order_id_fkey FOREIGN KEY (order_id) "
               "REFERENCES production_orders (id) ON DELETE CASCADE")
