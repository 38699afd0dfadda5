"""inbox_parked(): what else of an order waits in the inbox, counted on a snapshot of its own

Revision ID: 9c3d4e5f6071
Revises: e4b5c6d7e8f9
Create Date: 2026-12-05 02:00:00.000000

An order event in its turn is applied in one statement (orders/in_turn.py); the statement reads this
count once the order's lock is its, so an event parked while it waited is seen.
"""
from typing import Sequence, Union

from alembic import op

from alexandrite.kit.messaging.tables import DROP_INBOX_PARKED_FUNCTION, INBOX_PARKED_FUNCTION

# revision identifiers, used by Alembic.
revision: str = '9c3d4e5f6071'
down_revision: Union[str, Sequence[str], None] = 'e4b5c6d7e8f9'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute(INBOX_PARKED_FUNCTION)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(DROP_INBOX_PARKED_FUNCTION)
