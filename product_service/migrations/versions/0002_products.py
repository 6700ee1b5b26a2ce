"""The catalogue: products, listed newest first on (status[, kind], created_at, id).

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
    op.create_table('products',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('seller_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('sale_opens_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('sale_closes_at', mysql.DATETIME(fsp=6), nullable=True),
    sa.Column('limit_per_user', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.Column('updated_at', mysql.DATETIME(fsp=6), nullable=False),
    sa.CheckConstraint("kind IN ('general', 'preorder')", name=op.f('ck_products_known_kind')),
    sa.CheckConstraint("status IN ('pending', 'active', 'deleted')", name=op.f('ck_products_known_status')),
    sa.CheckConstraint('limit_per_user IS NULL OR limit_per_user >= 1', name=op.f('ck_products_limit_positive')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_products_price_not_negative')),
    sa.CheckConstraint('sale_closes_at IS NULL OR sale_opens_at IS NULL OR sale_closes_at > sale_opens_at', name=op.f('ck_products_window_in_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products'))
    )
    op.create_index('ix_products_status_created_at_id', 'products', ['status', 'created_at', 'id'], unique=False)
    op.create_index('ix_products_status_kind_created_at_id', 'products', ['status', 'kind', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_products_status_kind_created_at_id', table_name='products')
    op.drop_index('ix_products_status_created_at_id', table_name='products')
    op.drop_table('products')
