"""W3C Trace Context: a request's `traceparent` is kept (a new trace is begun without one), written in every log line
of the request, returned, and sent on with the webhooks its change causes, so one request can be followed from a
reseller's system through the service and back."""

import json
import logging
import re
from collections.abc import AsyncIterator

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import text

from service import tracing
from tests.api import Api
from tests.conftest import make_settings, service
from tests.receiver import Receiver
from tests.test_webhooks import deliver_all, endpoint

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver.running() as receiver:
        yield receiver


@pytest.fixture
async def hooks(database_url: str, receiver: Receiver) -> AsyncIterator[Api]:
    """The service sending to the receiver (allowed by its host and port), and to `https://127.0.0.1`."""
    allowed = ["127.0.0.1", receiver.host]
    settings = make_settings(database_url, webhook_allowed_hosts=allowed, webhook_retry_base_seconds=0)
    async with service(settings) as api:
        yield api


def _returned(headers: object) -> re.Match[str]:
    match = TRACEPARENT.match(headers["traceparent"])  # type: ignore[index]
    assert match is not None
    return match


async def test_an_incoming_trace_is_kept_with_a_span_of_the_services_own(api: Api) -> None:
    response = await api.get("/v1/installations/NOPE/support", headers={"traceparent": INCOMING})

    returned = _returned(response.headers)
    assert (returned["trace"], returned["flags"]) == (TRACE_ID, "01")
    assert returned["span"] != "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "given",
    [
        None,
        "garbage",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # an all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # an all-zero parent
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # the version that is never valid
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # upper case
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-more",  # version 00 has four fields
    ],
)
async def test_without_a_valid_traceparent_a_new_trace_is_begun(api: Api, given: str | None) -> None:
    response = await api.get("/healthz", headers={"traceparent": given} if given else {})

    returned = _returned(response.headers)
    assert returned["trace"] not in (TRACE_ID, "0" * 32)


async def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    assert tracing.continued(f"01-{TRACE_ID}-00f067aa0ba902b7-01-what-comes-later".encode()).trace_id == TRACE_ID


async def test_every_log_line_of_a_request_names_its_trace(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await api.installation("ACME-0001")
    [key] = await api.keys(1)
    caplog.clear()
    caplog.handler.addFilter(tracing.LogFilter())  # as `serve` configures its plain lines' handler
    with caplog.at_level(logging.INFO):
        response = await api.activate("ACME-0001", [key], headers={"traceparent": INCOMING})

    assert response.status_code == 201
    records = [record for record in caplog.records if record.name.startswith("service")]
    assert {record.trace_id for record in records} == {TRACE_ID}  # type: ignore[attr-defined]
    lines = [json.loads(r.getMessage()) for r in records if r.name in ("service.access", "service.events")]
    assert {line.get("event", "access") for line in lines} == {"activation", "access"}
    assert {line["trace_id"] for line in lines} == {TRACE_ID}


async def test_the_trace_goes_on_to_the_webhook_the_request_causes(hooks: Api, receiver: Receiver) -> None:
    await endpoint(hooks, receiver.url, event_types=["installation.registered"])
    registered = await hooks.post(
        "/v1/installations",
        {"code": "ACME-0001", "purchased_on": "2025-03-15"},
        headers={**hooks.admin, "traceparent": INCOMING},
    )
    await deliver_all(hooks)

    assert registered.status_code == 201
    [delivery] = receiver.received
    sent = _returned(delivery.headers)
    assert sent["trace"] == TRACE_ID
    assert sent["span"] not in ("00f067aa0ba902b7", _returned(registered.headers)["span"])


async def test_an_activation_answered_by_the_hot_route_sends_its_trace_with_the_stored_event(
    hooks: Api, receiver: Receiver
) -> None:
    """The one-statement activation writes the trace beside the event's stored body; the body stays as written."""
    await endpoint(hooks, receiver.url, event_types=["activation.created"])
    await hooks.installation("ACME-0001", purchased_on="2026-11-01")
    activated = await hooks.activate("ACME-0001", await hooks.keys(1), headers={"traceparent": INCOMING})
    async with hooks.engine.connect() as connection:
        [(stored, body)] = (
            await connection.execute(
                text("SELECT traceparent, body FROM webhook_events WHERE type = 'activation.created'")
            )
        ).all()
    await deliver_all(hooks)

    assert activated.status_code == 201
    assert stored == _returned(activated.headers).group(0)
    [delivery] = receiver.received
    sent = _returned(delivery.headers)
    assert (sent["trace"], delivery.body) == (TRACE_ID, body.encode())
    assert sent["span"] not in ("00f067aa0ba902b7", _returned(activated.headers)["span"])


async def test_with_an_otlp_endpoint_each_request_is_exported_as_a_span_of_its_trace(database_url: str) -> None:
    """OpenTelemetry's own protobuf types read what the SDK sent, as a collector would."""
    async with Receiver.running(path="") as collector:
        settings = make_settings(database_url, otel_exporter_otlp_endpoint=collector.url)
        async with service(settings) as api:
            response = await api.get("/v1/installations/NOPE/support", headers={"traceparent": INCOMING})
        # Leaving the service shut it down, which exports what was left; the SDK posts from its own thread.
        for _ in range(50):
            if collector.received:
                break
            await anyio.sleep(0.1)

    [export] = collector.received
    assert export.path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(export.body)
    [span] = [span for resource in request.resource_spans for scope in resource.scope_spans for span in scope.spans]
    returned = _returned(response.headers)
    assert (span.trace_id.hex(), span.span_id.hex()) == (TRACE_ID, returned["span"])
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert span.name == "GET /v1/installations/{code}/support"
    attributes = {a.key: a.value.int_value or a.value.string_value for a in span.attributes}
    assert attributes["http.response.status_code"] == 404 and attributes["http.route"].endswith("/support")
