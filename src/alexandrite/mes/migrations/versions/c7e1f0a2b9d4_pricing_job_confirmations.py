"""pricing job confirmations: what the customer confirmed when submitting (e.g. an unusual scale)

Revision ID: c7e1f0a2b9d4
Revises: baa00b041613
Create Date: 2026-12-03 10:00:00.000000

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = 'c7e1f0a2b9d4'
down_revision: Union[str, Sequence[str], None] = 'baa00b041613'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('pricing_jobs', sa.Column('confirm', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('pricing_jobs', 'confirm')
