"""The newsfeed moves to fan-out on write: follow_counts.posts_pulled marks the authors with so
many followers that their posts are pulled at read time instead of pushed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("follow_counts", sa.Column("posts_pulled", sa.Boolean(), nullable=False,
                                             server_default=sa.false()))
    # The server default only fills the existing rows; the model sets the value on insert.
    op.alter_column("follow_counts", "posts_pulled", existing_type=sa.Boolean(),
                    existing_nullable=False, server_default=None)
    op.create_index("ix_follow_counts_posts_pulled", "follow_counts", ["posts_pulled"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_follow_counts_posts_pulled", table_name="follow_counts")
    op.drop_column("follow_counts", "posts_pulled")
