"""Holds and user counts no longer carry foreign keys to stock_products.

InnoDB checks a foreign key by taking a shared lock on the parent row. A hold writes its own
row, then the user's count, then moves the product's counts last, so that the product row
(which every hold of a product queues on) is locked for one statement and the commit only. With
the foreign keys, two holds of one product would each take the shared lock with their inserts
and then wait on each other's for the exclusive one: a deadlock on every concurrent pair.

Nothing is lost: a hold and a count are only ever written in the transaction whose UPDATE of
the product row must match (the product exists and is live) or the whole transaction is rolled
back, and products are never deleted (deleted_at marks them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_stock_holds_product_id_stock_products", "stock_holds",
                       type_="foreignkey")
    op.drop_constraint("fk_stock_user_counts_product_id_stock_products", "stock_user_counts",
                       type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key("fk_stock_holds_product_id_stock_products", "stock_holds",
                          "stock_products", ["product_id"], ["product_id"], ondelete="RESTRICT")
    op.create_foreign_key("fk_stock_user_counts_product_id_stock_products", "stock_user_counts",
                          "stock_products", ["product_id"], ["product_id"], ondelete="RESTRICT")
