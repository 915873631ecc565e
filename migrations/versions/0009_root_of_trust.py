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
    with op.batch_alter_table("signing_keys") as table:
        table.add_column(sa.Column("generation", sa.Integer(), nullable=True))
        table.add_column(sa.Column("signs_from", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("certificate", sa.LargeBinary(), nullable=True))
        table.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("revoked_since", sa.DateTime(timezone=True), nullable=True))
    # Each key was made signing at once, and signed until the next one was made.
    op.execute(
        "UPDATE signing_keys SET signs_from = created_at, "
        "generation = (SELECT count(*) FROM signing_keys AS earlier WHERE earlier.id <= signing_keys.id)"
    )
    with op.batch_alter_table("signing_keys") as table:
        table.alter_column("generation", existing_type=sa.Integer(), nullable=False)
        table.create_unique_constraint(op.f("uq_signing_keys_generation"), ["generation"])
        table.create_check_constraint(
            op.f("ck_signing_keys_revoked_since_when"), "(revoked_at IS NULL) = (revoked_since IS NULL)"
        )
        table.drop_constraint(op.f("ck_signing_keys_retired_not_signing"), type_="check")
        table.drop_constraint(op.f("ck_signing_keys_signing_true_or_null"), type_="check")
        table.drop_constraint(op.f("uq_signing_keys_signing"), type_="unique")
        table.drop_column("retired_at")
        table.drop_column("signing")
    op.create_table(
        "revocation_lists",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("crl", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_revocation_lists")),
    )


def downgrade() -> None:
    op.drop_table("revocation_lists")
    with op.batch_alter_table("signing_keys") as table:
        table.add_column(sa.Column("signing", sa.Boolean(), nullable=True))
        table.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    # The newest key signs; every other one retired when the next was made.
    op.execute("UPDATE signing_keys SET signing = true WHERE generation = (SELECT max(generation) FROM signing_keys)")
    op.execute(
        "UPDATE signing_keys SET retired_at = COALESCE((SELECT min(later.created_at) FROM signing_keys AS later "
        "WHERE later.generation > signing_keys.generation), created_at) WHERE signing IS NULL"
    )
    with op.batch_alter_table("signing_keys") as table:
        table.create_unique_constraint(op.f("uq_signing_keys_signing"), ["signing"])
        table.create_check_constraint(op.f("ck_signing_keys_signing_true_or_null"), "signing")
        table.create_check_constraint(
            op.f("ck_signing_keys_retired_not_signing"), "(signing IS NULL) = (retired_at IS NOT NULL)"
        )
        table.drop_constraint(op.f("ck_signing_keys_revoked_since_when"), type_="check")
        table.drop_constraint(op.f("uq_signing_keys_generation"), type_="unique")
        table.drop_column("revoked_since")
        table.drop_column("revoked_at")
        table.drop_column("certificate")
        table.drop_column("signs_from")
        table.drop_column("generation")
