"""When the database cannot be reached, callers get 503 `unavailable` at once, never a stack trace."""

import uuid
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service import keyformat
from service.db import create_engine
from tests.api import Api
from tests.conftest import _admin_execute, make_settings

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nothing"  # the discard port: nothing listens

pytestmark = pytest.mark.anyio


async def test_an_unreachable_database_is_answered_503_with_retry_after() -> None:
    settings = make_settings(UNREACHABLE)
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        reads = await api.get("/v1/installations/ACME/support")
        writes = await api.post("/v1/installations", {"code": "ACME", "purchased_on": "2025-01-01"}, headers=api.admin)
    await engine.dispose()

    for response in (reads, writes):
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unavailable"
        assert "Traceback" not in response.text and "127.0.0.1" not in response.text


async def test_a_database_refusing_connections_is_answered_503_with_retry_after(database_url: str) -> None:
    """PostgreSQL refuses a login when the server or the role has no connection left (SQLSTATE 53300): a role
    allowed no connection at all stands for a server at `max_connections`."""
    role = f"timex_refused_{uuid.uuid4().hex[:12]}"
    await _admin_execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        settings = make_settings(make_url(database_url).set(username=role).render_as_string(hide_password=False))
        engine = create_engine(settings.database_url)
        async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
            responses = {
                "hot read": await api.get("/v1/installations/ACME/support"),
                "activation": await api.activate("ACME", [keyformat.generate()]),
                "cold read": await api.get("/v1/keys", headers=api.admin),
            }
        await engine.dispose()
    finally:
        await _admin_execute(f'DROP ROLE IF EXISTS "{role}"')

    assert {path: (r.status_code, r.json()["code"]) for path, r in responses.items()} == {
        path: (503, "unavailable") for path in responses
    }
    assert all(r.headers["retry-after"].isdigit() for r in responses.values())


async def test_a_sql_error_is_a_500_with_its_traceback_logged_once_not_an_outage(
    own_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug (here a table missing) is not the database being away: `500 internal_error`, not `503` ("retry,
    nothing was written"), and its traceback is in the log, once."""
    engine = create_engine(own_database_url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE installations CASCADE"))
    settings = make_settings(own_database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        response = await api.get("/v1/installations/ACME/support")
    await engine.dispose()

    assert response.status_code == 500 and response.json()["code"] == "internal_error"
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1
    assert "UndefinedTableError" in caplog.text and "Traceback" not in response.text
