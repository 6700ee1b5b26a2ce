"""The ledger behind the live inventory: stock_products, stock_holds, stock_user_counts.

The CHECK on stock_products (held + sold <= total) is the hard guard against overselling,
whatever Redis says; MariaDB and MySQL >= 8.0.16 enforce it.

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
    op.create_table('stock_products',
    sa.Column('product_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('seller_id', sa.BigInteger(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('held', sa.BigInteger(), nullable=False),
    sa.Column('sold', sa.BigInteger(), nullable=False),
    sa.Column('sale_opens_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('sale_closes_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('limit_per_user', sa.Integer(), nullable=True),
    sa.Column('deleted_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('updated_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.CheckConstraint('held >= 0 AND sold >= 0 AND held + sold <= total', name=op.f('ck_stock_products_within_total')),
    sa.PrimaryKeyConstraint('product_id', name=op.f('pk_stock_products'))
    )
    op.create_table('stock_holds',
    sa.Column('order_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('expires_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('updated_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.CheckConstraint("state IN ('held', 'committed', 'released')", name=op.f('ck_stock_holds_known_state')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_stock_holds_positive_quantity')),
    sa.ForeignKeyConstraint(['product_id'], ['stock_products.product_id'], name=op.f('fk_stock_holds_product_id_stock_products'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_stock_holds'))
    )
    op.create_index('ix_stock_holds_product_id_state', 'stock_holds', ['product_id', 'state'], unique=False)
    op.create_index('ix_stock_holds_state_expires_at', 'stock_holds', ['state', 'expires_at'], unique=False)
    op.create_table('stock_user_counts',
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('units >= 0', name=op.f('ck_stock_user_counts_not_negative')),
    sa.ForeignKeyConstraint(['product_id'], ['stock_products.product_id'], name=op.f('fk_stock_user_counts_product_id_stock_products'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('product_id', 'user_id', name=op.f('pk_stock_user_counts'))
    )


def downgrade() -> None:
    op.drop_table('stock_user_counts')
    op.drop_index('ix_stock_holds_state_expires_at', table_name='stock_holds')
    op.drop_index('ix_stock_holds_product_id_state', table_name='stock_holds')
    op.drop_table('stock_holds')
    op.drop_table('stock_products')
