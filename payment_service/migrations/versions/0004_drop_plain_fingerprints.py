"""Drops the Idempotency-Key fingerprints written as plain SHA-256 of a body holding the card
number (recoverable by trying the candidates left by card_last4 and a guessed BIN). They cannot
be rewritten as HMACs without the number; a payment without one is matched by its order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE payments SET idempotency_fingerprint = NULL "
               "WHERE idempotency_fingerprint IS NOT NULL")


def downgrade() -> None:
    pass  # what was dropped is gone on purpose
