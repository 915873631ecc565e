"""HOT installation updates: the support end kept apart from the installation's row, fewer key index entries

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

An activation updates its installation's `months` and `bonus_months`, and its keys' `status`, `activation_id`,
`used_at` and `position`. An update is HOT (no index entry written, the new row version on the same page) only
when no indexed column changes: the support end (indexed for the renewal pipeline) moves to `support_ends`, and
the installations' pages keep 10 % free for the new versions (fillfactor 90). The keys' `status` index, which no
query needs, goes; their `activation_id` index keeps the used keys only (a key's update still writes its entries
there: the keys of an activation are looked up by it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "support_ends",
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("reseller_id", sa.Uuid(), nullable=True),
        sa.Column("support_end", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["installation_id"], ["installations.id"], name=op.f("fk_support_ends_installation_id_installations")
        ),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_support_ends_reseller_id_resellers")),
        sa.PrimaryKeyConstraint("installation_id", name=op.f("pk_support_ends")),
    )
    op.execute("INSERT INTO support_ends SELECT id, reseller_id, support_end FROM installations")
    op.create_index("ix_support_ends_support_end_installation_id", "support_ends", ["support_end", "installation_id"])
    op.create_index(
        "ix_support_ends_reseller_id_support_end_installation_id",
        "support_ends",
        ["reseller_id", "support_end", "installation_id"],
    )
    op.drop_index("ix_installations_reseller_id_support_end_id", table_name="installations")
    op.drop_index("ix_installations_support_end_id", table_name="installations")
    op.drop_column("installations", "support_end")
    op.execute("ALTER TABLE installations SET (fillfactor = 90)")
    op.drop_index("ix_license_keys_status", table_name="license_keys")
    op.drop_index("ix_license_keys_activation_id", table_name="license_keys")
    op.create_index(
        "ix_license_keys_activation_id",
        "license_keys",
        ["activation_id"],
        postgresql_where=sa.text("activation_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_license_keys_activation_id", table_name="license_keys")
    op.create_index("ix_license_keys_activation_id", "license_keys", ["activation_id"])
    op.create_index("ix_license_keys_status", "license_keys", ["status"])
    op.execute("ALTER TABLE installations RESET (fillfactor)")
    op.add_column("installations", sa.Column("support_end", sa.Date(), nullable=True))
    op.execute(
        "UPDATE installations SET support_end = s.support_end FROM support_ends AS s WHERE s.installation_id = id"
    )
    op.alter_column("installations", "support_end", nullable=False)
    op.create_index("ix_installations_support_end_id", "installations", ["support_end", "id"])
    op.create_index(
        "ix_installations_reseller_id_support_end_id", "installations", ["reseller_id", "support_end", "id"]
    )
    op.drop_index("ix_support_ends_reseller_id_support_end_installation_id", table_name="support_ends")
    op.drop_index("ix_support_ends_support_end_installation_id", table_name="support_ends")
    op.drop_table("support_ends")
