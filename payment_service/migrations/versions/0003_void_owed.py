"""Payments that owe the processor a void (failed while their charge may stand), kept until the
processor confirms it; a payment's outcome found by its payment id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('payments', sa.Column('void_owed', sa.Boolean(), server_default=sa.false(),
                                        nullable=False))
    op.create_index('ix_payments_void_owed', 'payments', ['void_owed'], unique=False)
    op.create_index('ix_payment_outbox_payment_id', 'payment_outbox', ['payment_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_payment_outbox_payment_id', table_name='payment_outbox')
    op.drop_index('ix_payments_void_owed', table_name='payments')
    op.drop_column('payments', 'void_owed')
