"""installations store their support end, indexed for the renewal pipeline; idempotency keys

`installations.support_end` is anchor + months (R2), written by the service with every change of `months`.
Existing rows are filled in here by the rules themselves (`service.rules.add_months`), a batch at a time.

`idempotency_keys` holds each caller's `Idempotency-Key` with the first answer to it (encrypted).

Downgrade: drops both; the support end is still anchor + months.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.rules import add_months

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000

installations = sa.table(
    "installations",
    sa.column("id", sa.BigInteger),
    sa.column("anchor", sa.Date),
    sa.column("months", sa.Integer),
    sa.column("support_end", sa.Date),
)


def upgrade() -> None:
    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("support_end", sa.Date(), nullable=True))
    _fill_support_end(op.get_bind())
    with op.batch_alter_table("installations") as batch:
        batch.alter_column("support_end", existing_type=sa.Date(), nullable=False)
        batch.drop_index("ix_installations_reseller_id")
        batch.create_index("ix_installations_support_end_id", ["support_end", "id"])
        batch.create_index("ix_installations_reseller_id_support_end_id", ["reseller_id", "support_end", "id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("claim", sa.Uuid(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def _fill_support_end(connection: sa.Connection) -> None:
    select = (
        sa.select(installations.c.id, installations.c.anchor, installations.c.months)
        .where(installations.c.id > sa.bindparam("after"))
        .order_by(installations.c.id)
        .limit(BATCH)
    )
    update = (
        installations.update()
        .where(installations.c.id == sa.bindparam("row_id"))
        .values(support_end=sa.bindparam("end"))
    )
    after = 0
    while rows := connection.execute(select, {"after": after}).all():
        connection.execute(update, [{"row_id": id, "end": add_months(anchor, months)} for id, anchor, months in rows])
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("installations") as batch:
        batch.drop_index("ix_installations_reseller_id_support_end_id")
        batch.drop_index("ix_installations_support_end_id")
        batch.create_index("ix_installations_reseller_id", ["reseller_id"])
        batch.drop_column("support_end")
