"""Spans exported to an OpenTelemetry collector (OTLP over HTTP) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one span
per request, in the trace its `traceparent` names. Off by default, and then nothing of OpenTelemetry's SDK is even
imported: the requests pay nothing for it."""

from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from service.tracing import TraceContext


class Spans:
    def __init__(self, endpoint: str, service_name: str, version: str):
        # The provider is the app's own, not OpenTelemetry's global one: tests and embedders make several apps.
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": version})
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
        )
        self.tracer = self.provider.get_tracer("service.http")

    def start(self, incoming: TraceContext, method: str, start_ns: int) -> tuple[Any, TraceContext]:
        """The request's span, a child of the caller's when it sent one (else a new trace); and its context, which
        the service then reports (the answer's `traceparent`, the logs, the webhooks)."""
        parent = None
        if incoming.parent_id is not None:
            remote = SpanContext(
                int(incoming.trace_id, 16),
                int(incoming.parent_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(int(incoming.flags, 16)),
            )
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, start_time=start_ns)
        context = span.get_span_context()
        return span, TraceContext(
            f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{int(context.trace_flags):02x}", incoming.parent_id
        )

    def end(self, span: Any, *, method: str, route: str, status: int, end_ns: int) -> None:
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.request.method": method, "http.route": route, "http.response.status_code": status})
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)

    def close(self) -> None:
        self.provider.shutdown()  # exports what is left
