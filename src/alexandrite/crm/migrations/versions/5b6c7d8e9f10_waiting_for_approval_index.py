"""waiting for approval index: priced orders, longest waiting first

Revision ID: 5b6c7d8e9f10
Revises: 0a0a438d19e4
Create Date: 2026-12-04 06:30:00.000000

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '5b6c7d8e9f10'
down_revision: Union[str, Sequence[str], None] = '0a0a438d19e4'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_orders_waiting_approval', 'orders', ['status_since', 'id'], unique=False,
                    postgresql_where="status = 'PRICE_CALCULATED'")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_orders_waiting_approval', table_name='orders', postgresql_where="status = 'PRICE_CALCULATED'")
