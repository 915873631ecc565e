"""signing keys live with the data: one key set per deployment, the private keys encrypted

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("signing", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("signing", name=op.f("ck_signing_keys_signing_true_or_null")),
        sa.CheckConstraint(
            "(signing IS NULL) = (retired_at IS NOT NULL)", name=op.f("ck_signing_keys_retired_not_signing")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_signing_keys_kid")),
        sa.UniqueConstraint("signing", name=op.f("uq_signing_keys_signing")),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
