"""The one-statement activation, pinned: the SQL it compiles to on PostgreSQL is committed beside this test
(`snapshots/activation_in_one_statement.sql`), so that a change to it is a change someone reads, and its
all-or-nothing rests on one named foreign key.

After a deliberate change: `UPDATE_SNAPSHOTS=1 python -m pytest tests/test_activation_statement.py`, and
read the diff; then change the database's function `record_activation` to match, in a new migration (0017 made
it): behind a transaction-mode pooler the service writes activations with it (tests/test_api_activations.py and
tests/test_concurrency.py run every rule and race both ways)."""

import os
from pathlib import Path

from sqlalchemy import ForeignKeyConstraint
from sqlalchemy.dialects.postgresql import asyncpg

from service.activations import _record_in_one_statement
from service.models import KEY_ACTIVATION_FK, LicenseKey

SNAPSHOT = Path(__file__).parent / "snapshots" / "activation_in_one_statement.sql"


def _compiled_for_two_keys() -> str:
    compiled = _record_in_one_statement(2).statement.compile(dialect=asyncpg.dialect())
    legend = "\n".join(f"--   ${n} {name}" for n, name in enumerate(dict.fromkeys(compiled.positiontup), start=1))
    return f"-- Activating two keys in one statement (PostgreSQL). Parameters:\n{legend}\n{compiled.string}\n"


def test_the_one_statement_activation_compiles_to_the_committed_sql() -> None:
    sql = _compiled_for_two_keys()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(sql)

    assert sql == SNAPSHOT.read_text(), (
        "the statement changed: read it, then UPDATE_SNAPSHOTS=1, and change record_activation (module docstring)"
    )


def test_its_all_or_nothing_rests_on_the_keys_foreign_key_to_their_activation() -> None:
    foreign_keys = {c.name: c for c in LicenseKey.__table__.constraints if isinstance(c, ForeignKeyConstraint)}

    assert KEY_ACTIVATION_FK in foreign_keys
    assert [column.name for column in foreign_keys[KEY_ACTIVATION_FK].columns] == ["activation_id"]
    assert foreign_keys[KEY_ACTIVATION_FK].referred_table.name == "activations"
