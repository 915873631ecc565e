"""W3C Trace Context (`traceparent`): the trace a request belongs to, kept from the caller or begun here, so that one
request can be followed from a reseller's system through the service and the webhooks it causes.

A request's context is set once by the HTTP layer; what the request writes (its log lines, the events its change
emits) reads it from here, so that nothing below the routes takes it as an argument."""

import logging
import re
import secrets
from contextvars import ContextVar
from typing import NamedTuple

_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class TraceContext(NamedTuple):  # a tuple: made on every request, at a tenth of a frozen dataclass's cost
    trace_id: str
    span_id: str
    """This service's span: the parent of whatever it calls (a webhook delivery)."""
    flags: str = "00"
    parent_id: str | None = None
    """The caller's span, when it sent one."""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> "TraceContext":
        """A new span of the same trace, for a call made on its behalf (a webhook delivery)."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)


def continued(header: bytes) -> TraceContext:
    """The trace of an incoming `traceparent` with a span of this service's own; a new trace when there is none or
    it is not one (W3C Trace Context §4.3: version ff, an all-zero id, or version 00 with more fields)."""
    match = _TRACEPARENT.match(header) if header else None  # most requests send none: no regex then
    if match:
        version, trace_id, parent_id, flags, more = match.groups()
        if version != b"ff" and trace_id != _ZERO_TRACE and parent_id != _ZERO_SPAN and not (version == b"00" and more):
            sampled = "01" if int(flags, 16) & 1 else "00"
            return TraceContext(trace_id.decode(), secrets.token_hex(8), sampled, parent_id.decode())
    ids = secrets.token_hex(24)  # both ids from one read of the system's random source
    return TraceContext(ids[:32], ids[32:])


def parsed(traceparent: str) -> TraceContext | None:
    """A stored `traceparent` (this service's own), read back."""
    match = _TRACEPARENT.match(traceparent.encode())
    return TraceContext(match[2].decode(), match[3].decode(), match[4].decode()) if match else None


CURRENT: ContextVar[TraceContext | None] = ContextVar("trace", default=None)


def current_traceparent() -> str | None:
    trace = CURRENT.get()
    return None if trace is None else trace.traceparent


class LogFilter(logging.Filter):
    """Gives every log record the trace of the request it was written in (`trace_id`, `-` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace = CURRENT.get()
        record.trace_id = "-" if trace is None else trace.trace_id
        return True
