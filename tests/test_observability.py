"""What ops watch: request ids, one JSON log line per request, business events, Prometheus metrics."""

import json
import logging
import re
from datetime import date

import pytest

from service.db import create_engine
from service.settings import Settings
from tests.api import Api

pytestmark = pytest.mark.anyio


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # exposition sorts labels
    match = (
        re.search(rf"^{name}\{{[^}}]*{re.escape(wanted)}[^}}]*\}} (\S+)$", text, re.MULTILINE)
        if labels
        else re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    )
    return float(match.group(1)) if match else 0.0


async def test_a_request_id_is_taken_from_the_caller_or_made(api: Api) -> None:
    given = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    made = await api.get("/healthz")
    hostile = await api.get("/healthz", headers={"X-Request-ID": "x" * 200})

    assert given.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


async def test_every_request_is_one_json_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        response = await api.get("/v1/installations/NOPE/support", headers={"X-Request-ID": "trace-1"})

    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "service.access"]
    assert line["route"] == "/v1/installations/{code}/support"
    assert (line["method"], line["status"], line["request_id"]) == ("GET", response.status_code, "trace-1")
    assert line["duration_ms"] >= 0


async def test_business_events_are_logged_with_ids_and_never_keys(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await api.installation("ACME")
    with caplog.at_level(logging.INFO, logger="service.events"):
        keys = await api.keys(2)
        activation = (await api.activate("ACME", keys)).json()

    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "service.events"]
    assert [e["event"] for e in events] == ["keys_issued", "activation"]
    assert events[1]["activation_id"] == activation["activation_id"]
    assert not any(key in caplog.text or key.replace("-", "") in caplog.text for key in keys)


async def test_metrics_are_refused_to_the_public_by_default(api: Api) -> None:
    response = await api.get("/metrics")

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert "/metrics" not in (await api.get("/openapi.json")).json()["paths"]


async def test_metrics_are_served_to_the_configured_token_or_network(settings: Settings) -> None:
    settings = settings.model_copy(update={"metrics_token": "scrape-me", "metrics_networks": ["192.0.2.0/24"]})
    engine = create_engine(settings.database_url)
    async with (
        Api.started(settings, engine, today=date(2026, 11, 24), client_address="198.51.100.1") as outside,
        Api.started(settings, engine, today=date(2026, 11, 24), client_address="192.0.2.9") as inside,
    ):
        with_token = await outside.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        wrong_token = await outside.get("/metrics", headers={"Authorization": "Bearer guess"})
        from_network = await inside.get("/metrics")
    await engine.dispose()

    assert with_token.status_code == 200 and "http_requests_total" in with_token.text
    assert wrong_token.status_code == 403
    assert from_network.status_code == 200


async def test_metrics_count_requests_activations_and_keys(api: Api) -> None:
    api.settings.metrics_networks = ["127.0.0.1/32"]
    before = (await api.get("/metrics")).text
    await api.installation("ACME")
    keys = await api.keys(2)
    await api.activate("ACME", keys[:1])
    await api.activate("ACME", keys[:1])
    await api.activate("ACME", keys[:1] + keys[:1])

    after = await api.get("/metrics")

    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for outcome, delta in (("activated", 1), ("replayed", 1), ("key_duplicated", 1)):
        assert (
            _metric(text, "activations_total", outcome=outcome) - _metric(before, "activations_total", outcome=outcome)
            == delta
        )
    assert _metric(text, "keys_issued_total") - _metric(before, "keys_issued_total") == 2
    assert _metric(text, "http_requests_total", route="/v1/activations", method="POST", status="201") >= 1
    assert "http_request_duration_seconds_bucket" in text
