"""The social tables: posts, comments, their likes, follows with their counts, and activities.

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
    op.create_table("follow_counts",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("follower_count", mysql.INTEGER(unsigned=True), nullable=False),
        sa.Column("following_count", mysql.INTEGER(unsigned=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_follow_counts"))
    )
    op.create_table("follows",
        sa.Column("follower_id", sa.BigInteger(), nullable=False),
        sa.Column("followee_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("follower_id", "followee_id", name=op.f("pk_follows"))
    )
    op.create_index("ix_follows_followee_id_created_at_follower_id", "follows", ["followee_id", "created_at", "follower_id"], unique=False)
    op.create_index("ix_follows_follower_id_created_at_followee_id", "follows", ["follower_id", "created_at", "followee_id"], unique=False)
    op.create_table("posts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("like_count", mysql.INTEGER(unsigned=True), nullable=False),
        sa.Column("comment_count", mysql.INTEGER(unsigned=True), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts"))
    )
    op.create_index("ix_posts_author_id_created_at_id", "posts", ["author_id", "created_at", "id"], unique=False)
    op.create_index("ix_posts_created_at_id", "posts", ["created_at", "id"], unique=False)
    op.create_table("comments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("like_count", mysql.INTEGER(unsigned=True), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_comments_post_id_posts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments"))
    )
    op.create_index("ix_comments_post_id_created_at_id", "comments", ["post_id", "created_at", "id"], unique=False)
    op.create_table("post_likes",
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_post_likes_post_id_posts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("post_id", "user_id", name=op.f("pk_post_likes"))
    )
    op.create_table("activities",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("post_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name=op.f("fk_activities_comment_id_comments"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_activities_post_id_posts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
        sa.UniqueConstraint("type", "target_id", "actor_id", name="uq_activities_type_target_id_actor_id")
    )
    op.create_index("ix_activities_actor_id_created_at_id", "activities", ["actor_id", "created_at", "id"], unique=False)
    op.create_index(op.f("ix_activities_comment_id"), "activities", ["comment_id"], unique=False)
    op.create_index("ix_activities_owner_id_created_at_id", "activities", ["owner_id", "created_at", "id"], unique=False)
    op.create_index(op.f("ix_activities_post_id"), "activities", ["post_id"], unique=False)
    op.create_table("comment_likes",
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name=op.f("fk_comment_likes_comment_id_comments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("comment_id", "user_id", name=op.f("pk_comment_likes"))
    )


def downgrade() -> None:
    op.drop_table("comment_likes")
    op.drop_index(op.f("ix_activities_post_id"), table_name="activities")
    op.drop_index("ix_activities_owner_id_created_at_id", table_name="activities")
    op.drop_index(op.f("ix_activities_comment_id"), table_name="activities")
    op.drop_index("ix_activities_actor_id_created_at_id", table_name="activities")
    op.drop_table("activities")
    op.drop_table("post_likes")
    op.drop_index("ix_comments_post_id_created_at_id", table_name="comments")
    op.drop_table("comments")
    op.drop_index("ix_posts_created_at_id", table_name="posts")
    op.drop_index("ix_posts_author_id_created_at_id", table_name="posts")
    op.drop_table("posts")
    op.drop_index("ix_follows_follower_id_created_at_followee_id", table_name="follows")
    op.drop_index("ix_follows_followee_id_created_at_follower_id", table_name="follows")
    op.drop_table("follows")
    op.drop_table("follow_counts")
