"""Index users (email_verified, created_at), so the purge of unverified accounts older than a day
is not a table scan.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_users_email_verified_created_at"), "users",
                    ["email_verified", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_users_email_verified_created_at"), table_name="users")
