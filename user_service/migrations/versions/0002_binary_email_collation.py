"""users.email compares byte for byte (utf8mb4_bin).

The API lower-cases addresses before they reach the database, and that is the only folding
wanted. The schema's default collation also folded accents (`usér@` matched `user@`), while
the login throttle and the resend limit key on the exact spelling: every accented spelling
was a fresh throttle window onto the same account. Distinct mailboxes are distinct accounts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "users", "email",
        existing_type=sa.String(length=254), type_=sa.String(length=254, collation="utf8mb4_bin"),
        existing_nullable=False,
    )


def downgrade() -> None:
    # Fails if two addresses now differ only in accents; that is the point of the upgrade.
    op.alter_column(
        "users", "email",
        existing_type=sa.String(length=254, collation="utf8mb4_bin"),
        type_=sa.String(length=254, collation="utf8mb4_unicode_ci"),
        existing_nullable=False,
    )
