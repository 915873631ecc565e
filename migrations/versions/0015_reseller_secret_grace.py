"""resellers: the secret before a rotation, and until when it still logs in (a grace period)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("resellers", sa.Column("previous_secret_hash", sa.String(length=255), nullable=True))
    op.add_column("resellers", sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("resellers", "previous_secret_until")
    op.drop_column("resellers", "previous_secret_hash")
