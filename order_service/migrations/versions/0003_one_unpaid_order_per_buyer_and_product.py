"""One unpaid order per buyer per product: a column only pending orders fill (the product id),
under a unique key with the user id.

A database that already holds two pending orders of one buyer for one product refuses the key:
expire or cancel all but one of them first.

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
    op.add_column('orders', sa.Column(
        'unpaid_product_id', sa.BigInteger(),
        sa.Computed("IF(status = 'pending_payment', product_id, NULL)", persisted=True),
        nullable=True))
    op.create_unique_constraint('uq_orders_user_id_unpaid_product_id', 'orders',
                                ['user_id', 'unpaid_product_id'])


def downgrade() -> None:
    op.drop_constraint('uq_orders_user_id_unpaid_product_id', 'orders', type_='unique')
    op.drop_column('orders', 'unpaid_product_id')
