"""Payments (at most one pending or succeeded per order, by a unique index) and the outbox of
their outcomes for order_service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('payment_outbox',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('payment_id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('lease_token', mysql.CHAR(length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('delivered_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.CheckConstraint("kind IN ('paid', 'failed')", name=op.f('ck_payment_outbox_known_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_outbox'))
    )
    op.create_index('ix_payment_outbox_delivered_at_id', 'payment_outbox', ['delivered_at', 'id'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_code', sa.String(length=40), nullable=True),
    sa.Column('card_last4', mysql.CHAR(length=4), nullable=False),
    sa.Column('lease_token', mysql.CHAR(length=32), nullable=False),
    sa.Column('active_order_id', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255, collation='utf8mb4_bin'), nullable=True),
    sa.Column('idempotency_fingerprint', mysql.CHAR(length=64), nullable=True),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('updated_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'refunded')", name=op.f('ck_payments_known_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('active_order_id', name='uq_payments_active_order_id'),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_payments_user_id_idempotency_key')
    )
    op.create_index('ix_payments_order_id_id', 'payments', ['order_id', 'id'], unique=False)
    op.create_index('ix_payments_status_created_at', 'payments', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_payments_status_created_at', table_name='payments')
    op.drop_index('ix_payments_order_id_id', table_name='payments')
    op.drop_table('payments')
    op.drop_index('ix_payment_outbox_delivered_at_id', table_name='payment_outbox')
    op.drop_table('payment_outbox')
