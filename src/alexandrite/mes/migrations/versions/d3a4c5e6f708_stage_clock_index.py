"""stage clock index: in-work orders per status by time entered (late first, by stage)

Revision ID: d3a4c5e6f708
Revises: c7e1f0a2b9d4
Create Date: 2026-12-04 06:30:00.000000

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'd3a4c5e6f708'
down_revision: Union[str, Sequence[str], None] = 'c7e1f0a2b9d4'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema (the partitioned parent's index is created on every month)."""
    op.execute("CREATE INDEX ix_production_orders_in_work_clock ON production_orders (status, status_since, id) "
               "WHERE status IN ('MANUFACTURING_APPROVED', 'MANUFACTURING_STARTED', 'MANUFACTURING_COMPLETED', 'PACKAGING')")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP INDEX ix_production_orders_in_work_clock")
