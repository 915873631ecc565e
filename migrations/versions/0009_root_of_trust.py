"""root of trust: signing keys follow one another by generation, sign from an instant, carry their X.509
certificate and may be revoked; the root-signed revocation lists

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("signing_keys", sa.Column("generation", sa.Integer(), nullable=True))
    op.add_column("signing_keys", sa.Column("signs_from", sa.DateTime(timezone=True), nullable=True))
    op.add_column("signing_keys", sa.Column("certificate", sa.LargeBinary(), nullable=True))
    op.add_column("signing_keys", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("signing_keys", sa.Column("revoked_since", sa.DateTime(timezone=True), nullable=True))
    # Each key was made signing at once, and signed until the next one was made.
    op.execute(
        "UPDATE signing_keys SET signs_from = created_at, "
        "generation = (SELECT count(*) FROM signing_keys AS earlier WHERE earlier.id <= signing_keys.id)"
    )
    op.alter_column("signing_keys", "generation", existing_type=sa.Integer(), nullable=False)
    op.create_unique_constraint(op.f("uq_signing_keys_generation"), "signing_keys", ["generation"])
    op.create_check_constraint(
        op.f("ck_signing_keys_revoked_since_when"), "signing_keys", "(revoked_at IS NULL) = (revoked_since IS NULL)"
    )
    op.drop_constraint(op.f("ck_signing_keys_retired_not_signing"), "signing_keys", type_="check")
    op.drop_constraint(op.f("ck_signing_keys_signing_true_or_null"), "signing_keys", type_="check")
    op.drop_constraint(op.f("uq_signing_keys_signing"), "signing_keys", type_="unique")
    op.drop_column("signing_keys", "retired_at")
    op.drop_column("signing_keys", "signing")
    op.create_table(
        "revocation_lists",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("crl", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_revocation_lists")),
    )


def downgrade() -> None:
    op.drop_table("revocation_lists")
    op.add_column("signing_keys", sa.Column("signing", sa.Boolean(), nullable=True))
    op.add_column("signing_keys", sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    # The newest key signs; every other one retired when the next was made.
    op.execute("UPDATE signing_keys SET signing = true WHERE generation = (SELECT max(generation) FROM signing_keys)")
    op.execute(
        "UPDATE signing_keys SET retired_at = COALESCE((SELECT min(later.created_at) FROM signing_keys AS later "
        "WHERE later.generation > signing_keys.generation), created_at) WHERE signing IS NULL"
    )
    op.create_unique_constraint(op.f("uq_signing_keys_signing"), "signing_keys", ["signing"])
    op.create_check_constraint(op.f("ck_signing_keys_signing_true_or_null"), "signing_keys", "signing")
    op.create_check_constraint(
        op.f("ck_signing_keys_retired_not_signing"), "signing_keys", "(signing IS NULL) = (retired_at IS NOT NULL)"
    )
    op.drop_constraint(op.f("ck_signing_keys_revoked_since_when"), "signing_keys", type_="check")
    op.drop_constraint(op.f("uq_signing_keys_generation"), "signing_keys", type_="unique")
    op.drop_column("signing_keys", "revoked_since")
    op.drop_column("signing_keys", "revoked_at")
    op.drop_column("signing_keys", "certificate")
    op.drop_column("signing_keys", "signs_from")
    op.drop_column("signing_keys", "generation")
