"""initial schema: resellers, installations, the activation ledger and license keys

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "resellers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resellers")),
        sa.UniqueConstraint("client_id", name=op.f("uq_resellers_client_id")),
        sa.UniqueConstraint("name", name=op.f("uq_resellers_name")),
    )
    op.create_table(
        "installations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("reseller_id", sa.Uuid(), nullable=True),
        sa.Column("anchor", sa.Date(), nullable=False),
        sa.Column("initial_months", sa.Integer(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("bonus_months", sa.Integer(), nullable=False),
        _created_at(),
        sa.CheckConstraint("initial_months >= 0", name=op.f("ck_installations_initial_months_not_negative")),
        sa.CheckConstraint("months >= initial_months", name=op.f("ck_installations_months_not_below_initial")),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_installations_reseller_id_resellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installations")),
        sa.UniqueConstraint("code", name=op.f("uq_installations_code")),
    )
    op.create_index(op.f("ix_installations_reseller_id"), "installations", ["reseller_id"])
    op.create_table(
        "activations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("activated_on", sa.Date(), nullable=False),
        sa.Column("licenses", sa.Integer(), nullable=False),
        sa.Column("months_before", sa.Integer(), nullable=False),
        sa.Column("months_added", sa.Integer(), nullable=False),
        sa.Column("bonus_months", sa.Integer(), nullable=False),
        sa.Column("support_end_before", sa.Date(), nullable=False),
        sa.Column("support_end_after", sa.Date(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        _created_at(),
        sa.CheckConstraint("licenses >= 1", name=op.f("ck_activations_licenses_positive")),
        sa.ForeignKeyConstraint(
            ["installation_id"], ["installations.id"], name=op.f("fk_activations_installation_id_installations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activations")),
    )
    op.create_index(op.f("ix_activations_installation_id"), "activations", ["installation_id"])
    op.create_table(
        "license_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("reseller_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("activation_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        _created_at(),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status <> 'used' OR activation_id IS NOT NULL", name=op.f("ck_license_keys_used_has_activation")
        ),
        sa.CheckConstraint("status IN ('issued', 'used', 'revoked')", name=op.f("ck_license_keys_status_known")),
        sa.ForeignKeyConstraint(
            ["activation_id"], ["activations.id"], name=op.f("fk_license_keys_activation_id_activations")
        ),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_license_keys_reseller_id_resellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_license_keys_digest")),
    )
    op.create_index(op.f("ix_license_keys_activation_id"), "license_keys", ["activation_id"])
    op.create_index(op.f("ix_license_keys_reseller_id"), "license_keys", ["reseller_id"])
    op.create_index(op.f("ix_license_keys_status"), "license_keys", ["status"])


def downgrade() -> None:
    op.drop_table("license_keys")
    op.drop_table("activations")
    op.drop_table("installations")
    op.drop_table("resellers")
