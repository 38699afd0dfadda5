"""inbox_parked(): what else of an order waits in the inbox, counted on a snapshot of its own

Revision ID: 8b2c3d4e5f60
Revises: 5b6c7d8e9f10
Create Date: 2026-12-05 02:00:00.000000

An order event in its turn is applied in one statement (orders/in_turn.py); the statement reads this
count once the order's lock is its, so an event parked while it waited is seen.
"""
from typing import Sequence, Union

from alembic import op

from alexandrite.kit.messaging.tables import DROP_INBOX_PARKED_FUNCTION, INBOX_PARKED_FUNCTION

# revision identifiers, used by Alembic.
revision: str = '8b2c3d4e5f60'
down_revision: Union[str, Sequence[str], None] = '5b6c7d8e9f10'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute(INBOX_PARKED_FUNCTION)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(DROP_INBOX_PARKED_FUNCTION)
