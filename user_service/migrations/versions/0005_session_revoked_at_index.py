"""Index sessions.revoked_at, so publishing the recent revocations again (when Redis lost them)
is not a table scan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_sessions_revoked_at"), "sessions", ["revoked_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_revoked_at"), table_name="sessions")
