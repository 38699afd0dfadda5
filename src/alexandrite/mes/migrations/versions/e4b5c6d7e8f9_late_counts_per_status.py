"""late counts per status: kept with the counts, moved forward by the SLA watchdog

Revision ID: e4b5c6d7e8f9
Revises: d3a4c5e6f708
Create Date: 2026-12-04 09:45:00.000000

``production_in_work`` mirrors the stage clock (status, status_since) of the orders in work, one row
each, in one small unpartitioned table: a range of it is one index probe, where the same range of
``production_orders`` is one probe per month. ``production_status_counts`` gains ``late`` (orders of the status whose ``status_since`` is before
``late_before``) and ``late_before`` (a point in time, ``-infinity`` until the watchdog first moves it).
The row trigger keeps ``late`` exact as orders enter and leave a status, whatever the clock; the
watchdog moves ``late_before`` up to ``now - SLA`` and adds the orders it passed. A reader adds the
few orders between ``late_before`` and ``now - SLA`` (see mes/repository.py ``count_in_work``).
"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'e4b5c6d7e8f9'
down_revision: Union[str, Sequence[str], None] = 'd3a4c5e6f708'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IN_WORK = "('MANUFACTURING_APPROVED', 'MANUFACTURING_STARTED', 'MANUFACTURING_COMPLETED', 'PACKAGING')"

COUNTS_FUNCTION = """
CREATE OR REPLACE FUNCTION production_status_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE production_status_counts
       SET n = n - 1, late = late - (OLD.status_since < late_before)::int
     WHERE status = OLD.status;
    IF FOUND THEN
      DELETE FROM production_in_work WHERE order_id = OLD.id;
    END IF;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    UPDATE production_status_counts
       SET n = n + 1, late = late + (NEW.status_since < late_before)::int
     WHERE status = NEW.status;
    IF FOUND THEN
      INSERT INTO production_in_work (order_id, status, status_since) VALUES (NEW.id, NEW.status, NEW.status_since);
    END IF;
  END IF;
  RETURN NULL;
END
$$
"""

OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION production_status_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
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


def _update_trigger(columns: str, when: str) -> None:
    op.execute("DROP TRIGGER production_status_counts_update ON production_orders")
    op.execute(f"CREATE TRIGGER production_status_counts_update AFTER UPDATE OF {columns} ON production_orders "
               f"FOR EACH ROW WHEN ({when} AND (OLD.status IN {IN_WORK} OR NEW.status IN {IN_WORK})) "
               "EXECUTE FUNCTION production_status_counts_apply()")


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("ALTER TABLE production_status_counts ADD COLUMN late bigint NOT NULL DEFAULT 0, "
               "ADD COLUMN late_before timestamptz NOT NULL DEFAULT '-infinity'")
    op.execute("CREATE TABLE production_in_work (order_id uuid PRIMARY KEY, status text NOT NULL, "
               "status_since timestamptz NOT NULL)")
    op.execute("CREATE INDEX ix_production_in_work_clock ON production_in_work (status, status_since)")
    op.execute("INSERT INTO production_in_work SELECT id, status, status_since FROM production_orders "
               f"WHERE status IN {IN_WORK}")
    op.execute(COUNTS_FUNCTION)
    # A change of the stage clock alone moves an order in or out of the late count as well.
    _update_trigger("status, status_since", "(OLD.status IS DISTINCT FROM NEW.status "
                                            "OR OLD.status_since IS DISTINCT FROM NEW.status_since)")


def downgrade() -> None:
    """Downgrade schema."""
    _update_trigger("status", "OLD.status IS DISTINCT FROM NEW.status")
    op.execute(OLD_FUNCTION)
    op.execute("DROP TABLE production_in_work")
    op.execute("ALTER TABLE production_status_counts DROP COLUMN late, DROP COLUMN late_before")
