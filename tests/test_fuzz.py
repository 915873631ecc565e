"""Hostile input: a property-based fuzz run over the service's own OpenAPI document, against a
real server. No input may cause a 5xx, and every answer must match what the document promises."""

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.auth import TokenSettings, issue_token
from service.clock import Clock
from service.settings import Settings
from tests.conftest import migrated_database
from tests.servers import running_server

FUZZED_KEYS_AT_MOST = 100

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    # Limits high enough that the fuzzer reaches the handlers rather than the limiter.
    env = {
        **os.environ,
        "ACTIVATION_FAILURE_LIMIT": "100000",
        "TOKEN_FAILURE_LIMIT": "100000",
    }
    with migrated_database() as database, running_server({**env, "DATABASE_URL": database}, cwd=folder) as url:
        yield url


@pytest.fixture(scope="module")
def admin() -> dict[str, str]:
    settings_ = Settings(_env_file=None)
    token = issue_token(TokenSettings.of(settings_), "admin", "fuzz", Clock(settings_.zone).now(), timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


def test_no_input_breaks_the_service_or_its_contract(server: str, admin: dict[str, str]) -> None:
    document = httpx.get(f"{server}/openapi.json").json()
    # Hypothesis favours bounds, and 25 batches of 100,000 keys take minutes; the bound itself is
    # specified in test_api_keys.py and measured by the benchmark.
    document["components"]["schemas"]["KeysIn"]["properties"]["count"]["maximum"] = FUZZED_KEYS_AT_MOST
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case) -> None:
            case.call_and_validate(base_url=server, headers=admin, checks=CHECKS)

        fuzz()
