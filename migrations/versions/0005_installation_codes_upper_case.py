"""installation codes are case-insensitive: the stored codes are folded to upper case

The service folds every code it is given to upper case; codes stored before are folded here. Two
codes that differ only by case would be one installation now: rather than merge two customers'
support, the upgrade stops, naming them, and changes nothing. An operator renames one of them (or
merges them by hand) and upgrades again.

Downgrade: nothing to undo. The upper-case codes are valid codes for the service before this
revision too, and the case they were typed in is not kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

installations = sa.table("installations", sa.column("code", sa.String))
folded = sa.func.upper(installations.c.code)


def upgrade() -> None:
    connection = op.get_bind()
    clashing = sa.select(folded).group_by(folded).having(sa.func.count() > 1)
    spellings: dict[str, list[str]] = {}
    for code in connection.execute(sa.select(installations.c.code).where(folded.in_(clashing))).scalars():
        spellings.setdefault(code.upper(), []).append(code)
    if spellings:
        groups = "; ".join(", ".join(repr(code) for code in sorted(group)) for _, group in sorted(spellings.items()))
        raise RuntimeError(
            f"Installation codes are case-insensitive now, and these differ only by case: {groups}. "
            "Rename or merge them by hand, then upgrade again; nothing was changed."
        )
    op.execute(installations.update().where(installations.c.code != folded).values(code=folded))


def downgrade() -> None:
    """Nothing to undo (see above)."""
