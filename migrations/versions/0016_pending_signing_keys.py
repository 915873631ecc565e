"""pending signing keys: a rotation prepared from the cabinet, its key waiting for its certificate by the root

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_signing_keys",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_pending_signing_keys_one_at_a_time")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_signing_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_pending_signing_keys_kid")),
    )


def downgrade() -> None:
    op.drop_table("pending_signing_keys")
