"""The schema is made by the migrations alone, and they agree with the models."""

import asyncio
import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from service import migrate
from service.db import create_engine
from service.models import Base


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}
    finally:
        await engine.dispose()


def test_migrations_go_up_to_head_and_back_down_to_base(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, configure_logging=False)
    assert asyncio.run(_tables(empty_database_url)) == set(Base.metadata.tables)

    migrate.downgrade(empty_database_url, configure_logging=False)
    assert asyncio.run(_tables(empty_database_url)) == set()


def test_the_models_and_the_migrations_agree(database_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add on a database built by the migrations."""
    command.check(migrate.alembic_config(database_url, configure_logging=False))


async def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _codes(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return sorted((await conn.execute(text("SELECT code FROM installations"))).scalars())
    finally:
        await engine.dispose()


def _installations(*codes: str) -> list[str]:
    return [
        f"INSERT INTO installations (code, anchor, initial_months, months, bonus_months) "
        f"VALUES ('{code}', '2025-03-15', 12, 12, 0)"
        for code in codes
    ]


def test_installation_codes_are_folded_to_upper_case(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "0004", configure_logging=False)
    asyncio.run(_execute(empty_database_url, *_installations("look-001", "Acme.2", "ZED_9")))

    migrate.upgrade(empty_database_url, configure_logging=False)

    assert asyncio.run(_codes(empty_database_url)) == ["ACME.2", "LOOK-001", "ZED_9"]


def test_codes_that_differ_only_by_case_stop_the_migration_rather_than_merge_customers(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0004", configure_logging=False)
    asyncio.run(_execute(empty_database_url, *_installations("look-001", "LOOK-001", "Look-001", "acme", "OTHER")))

    with pytest.raises(RuntimeError, match=r"differ only by case: 'LOOK-001', 'Look-001', 'look-001'\."):
        migrate.upgrade(empty_database_url, configure_logging=False)

    assert asyncio.run(_codes(empty_database_url)) == ["LOOK-001", "Look-001", "OTHER", "acme", "look-001"]


def test_the_support_end_of_existing_installations_is_filled_in_by_the_rules(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "0006", configure_logging=False)
    asyncio.run(
        _execute(
            empty_database_url,
            "INSERT INTO installations (code, anchor, initial_months, months, bonus_months) "
            "VALUES ('LEAP', '2024-01-31', 0, 1, 0), ('PLAIN', '2025-03-15', 12, 26, 2)",
        )
    )

    migrate.upgrade(empty_database_url, configure_logging=False)

    assert asyncio.run(_support_ends(empty_database_url)) == [("LEAP", "2024-02-29"), ("PLAIN", "2027-05-15")]


async def _support_ends(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT code, support_end FROM installations JOIN support_ends ON installation_id = id "
                    "ORDER BY code"
                )
            )
            return [(code, str(end)) for code, end in rows]
    finally:
        await engine.dispose()


_SCHEMA = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
       || coalesce('(' || character_maximum_length || ')', '') || ' ' || is_nullable
       || coalesce(' ' || column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype <> 'n'  -- PostgreSQL 18 lists NOT NULL
UNION ALL
SELECT 'storage ' || relname || ' ' || array_to_string(reloptions, ', ')
FROM pg_class WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL
ORDER BY 1
"""
SCHEMA_SNAPSHOT = Path(__file__).parent / "snapshots" / "schema_at_head.txt"


async def _schema(url: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return "\n".join((await conn.execute(text(_SCHEMA))).scalars()) + "\n"
    finally:
        await engine.dispose()


def test_the_schema_at_head_is_the_one_the_released_migrations_made(empty_database_url: str) -> None:
    """Every column, index, constraint and table storage parameter (the fillfactors that keep room for HOT
    updates), as `tests/snapshots/schema_at_head.txt` keeps them: made by the migrations of 0.2.0 (when they also
    ran on SQLite). A migration that changes the schema on purpose updates it (`UPDATE_SNAPSHOTS=1`)."""
    migrate.upgrade(empty_database_url, configure_logging=False)
    schema = asyncio.run(_schema(empty_database_url))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SCHEMA_SNAPSHOT.write_text(schema)

    assert schema == SCHEMA_SNAPSHOT.read_text()


async def _rows(url: str, query: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(query))]
    finally:
        await engine.dispose()


def test_stored_signing_keys_follow_one_another_as_they_were_made_and_back(empty_database_url: str) -> None:
    """Two keys of 0008 (the first retired when the second was made): generations 1 and 2, each signing from its
    making; down again, the newest signs and the other retired when the next was made."""
    migrate.upgrade(empty_database_url, "0008", configure_logging=False)
    asyncio.run(
        _execute(
            empty_database_url,
            "INSERT INTO signing_keys (kid, private_key, signing, created_at, retired_at) VALUES "
            "('old', 'x', NULL, '2026-01-01T00:00Z', '2026-06-01T00:00Z'), "
            "('new', 'y', true, '2026-06-01T00:00Z', NULL)",
        )
    )

    migrate.upgrade(empty_database_url, "0009", configure_logging=False)
    upgraded = asyncio.run(
        _rows(empty_database_url, "SELECT kid, generation, signs_from = created_at FROM signing_keys ORDER BY id")
    )
    migrate.downgrade(empty_database_url, "0008", configure_logging=False)
    downgraded = asyncio.run(
        _rows(empty_database_url, "SELECT kid, signing, retired_at::text FROM signing_keys ORDER BY id")
    )

    assert upgraded == [("old", 1, True), ("new", 2, True)]
    assert downgraded == [("old", None, "2026-06-01 00:00:00+00"), ("new", True, None)]


def test_an_activation_lists_its_keys_in_their_order_and_gives_them_back_their_positions(
    empty_database_url: str,
) -> None:
    """0018: each activation's keys move into its row (`key_ids`), in the order of their `position`; down again,
    each key gets its position back from that order."""
    migrate.upgrade(empty_database_url, "0017", configure_logging=False)
    first, second = "00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000a"
    asyncio.run(
        _execute(
            empty_database_url,
            *_installations("ACME-1"),
            "INSERT INTO activations (id, installation_id, activated_on, licenses, months_before, months_added, "
            "bonus_months, support_end_before, support_end_after) SELECT '00000000-0000-0000-0000-0000000000a1', id, "
            "'2026-01-10', 2, 12, 24, 0, '2026-03-15', '2028-03-15' FROM installations",
            "INSERT INTO license_keys (id, digest, prefix, status, activation_id, position) VALUES "
            f"('{second}', 'b', 'TXS-B', 'used', '00000000-0000-0000-0000-0000000000a1', 1), "
            f"('{first}', 'a', 'TXS-A', 'used', '00000000-0000-0000-0000-0000000000a1', 0), "
            "('00000000-0000-0000-0000-00000000000c', 'c', 'TXS-C', 'issued', NULL, NULL)",
        )
    )

    migrate.upgrade(empty_database_url, "0018", configure_logging=False)
    listed = asyncio.run(_rows(empty_database_url, "SELECT key_ids::text[] FROM activations"))
    migrate.downgrade(empty_database_url, "0017", configure_logging=False)
    positions = asyncio.run(_rows(empty_database_url, "SELECT prefix, position FROM license_keys ORDER BY prefix"))

    assert listed == [([first, second],)]
    assert positions == [("TXS-A", 0), ("TXS-B", 1), ("TXS-C", None)]
