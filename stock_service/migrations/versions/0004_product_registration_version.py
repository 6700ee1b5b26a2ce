"""stock_products.version: raised by every change of a product's registration.

Redis keeps the version of the settings it holds; the reconciler and a rebuild that read the
row before a change committed would otherwise put the older window or price back in Redis.
Existing rows start at 1; Redis states written before this carry no version (read as 0), so the
first round after the upgrade rewrites their settings once, unchanged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stock_products", sa.Column("version", sa.BigInteger(), server_default="1",
                                              nullable=False))


def downgrade() -> None:
    op.drop_column("stock_products", "version")
