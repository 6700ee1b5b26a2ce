"""Bind a code to its sign-up: the hash of the token only the signing-up client received, and
whether the sign-up replaced another one whose code was still live (then the token, or the
sign-up's client network, is required), and that network.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("email_verifications",
                  sa.Column("signup_token_hash", sa.CHAR(length=64), nullable=True))
    op.add_column("email_verifications",
                  sa.Column("contested", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("email_verifications",
                  sa.Column("signup_network", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("email_verifications", "signup_network")
    op.drop_column("email_verifications", "contested")
    op.drop_column("email_verifications", "signup_token_hash")
