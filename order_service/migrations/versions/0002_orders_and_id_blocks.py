"""Orders (with the effects they owe other services and their Idempotency-Key guard) and the id
blocks order ids are handed out from.

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
    op.create_table('id_blocks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('next_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_id_blocks'))
    )
    op.create_table('orders',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('expires_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('updated_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('lease_token', mysql.CHAR(length=32), nullable=True),
    sa.Column('lease_until', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('payment_id', sa.BigInteger(), nullable=True),
    sa.Column('stock_effect', sa.String(length=8), nullable=True),
    sa.Column('payment_effect', sa.String(length=8), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255, collation='utf8mb4_bin'), nullable=True),
    sa.Column('idempotency_fingerprint', mysql.CHAR(length=64), nullable=True),
    sa.CheckConstraint("payment_effect IN ('refund')", name=op.f('ck_orders_known_payment_effect')),
    sa.CheckConstraint("status IN ('pending_payment', 'paid', 'payment_failed', 'cancelled', 'expired', 'refunded')", name=op.f('ck_orders_known_status')),
    sa.CheckConstraint("stock_effect IN ('commit', 'release')", name=op.f('ck_orders_known_stock_effect')),
    sa.CheckConstraint('quantity BETWEEN 1 AND 100', name=op.f('ck_orders_quantity_in_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_orders_user_id_idempotency_key')
    )
    op.create_index('ix_orders_payment_effect', 'orders', ['payment_effect'], unique=False)
    op.create_index('ix_orders_status_expires_at', 'orders', ['status', 'expires_at'], unique=False)
    op.create_index('ix_orders_stock_effect', 'orders', ['stock_effect'], unique=False)
    op.create_index('ix_orders_user_id_created_at_id', 'orders', ['user_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_orders_user_id_status_created_at_id', 'orders', ['user_id', 'status', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_orders_user_id_status_created_at_id', table_name='orders')
    op.drop_index('ix_orders_user_id_created_at_id', table_name='orders')
    op.drop_index('ix_orders_stock_effect', table_name='orders')
    op.drop_index('ix_orders_status_expires_at', table_name='orders')
    op.drop_index('ix_orders_payment_effect', table_name='orders')
    op.drop_table('orders')
    op.drop_table('id_blocks')
