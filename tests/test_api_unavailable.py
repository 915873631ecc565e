"""When the database cannot be reached, callers get 503 `unavailable` at once, never a stack trace."""

from datetime import date

import pytest

from service.db import create_engine
from tests.api import Api
from tests.conftest import make_settings

UNREACHABLE = {
    "postgres": "postgresql://postgres@127.0.0.1:9/nothing",  # the discard port: nothing listens
    "sqlite": "sqlite:////nonexistent-folder/timex.db",
}

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", UNREACHABLE)
async def test_an_unreachable_database_is_answered_503_with_retry_after(backend: str) -> None:
    settings = make_settings(UNREACHABLE[backend])
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        reads = await api.get("/v1/installations/ACME/support")
        writes = await api.post("/v1/installations", {"code": "ACME", "purchased_on": "2025-01-01"},
                                headers=api.admin)
    await engine.dispose()

    for response in (reads, writes):
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unavailable"
        assert "Traceback" not in response.text and "nonexistent" not in response.text
