"""activations: an index in the order the ledger is listed (GET /v1/activations)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_activations_created_at_id", "activations", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_activations_created_at_id", table_name="activations")
