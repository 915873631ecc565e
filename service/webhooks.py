"""Webhooks' data: the endpoints resellers register, the outbox of events and their deliveries.

An event is written (`emit`) in the transaction of the change it reports, so that a change rolled back has no
event and a change committed always has one. A worker (`service.delivery`) then fans each event out to the
endpoints that want it (`dispatch`), claims the deliveries that are due (`claim`: several workers never hold one
at once) and records what each attempt gave (`record`).
"""

import base64
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import httpx
import orjson
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, tuple_, update

from service import pagination, resellers, tracing
from service.audit import Pending
from service.auth import Principal
from service.driver import Driver, Rows, Session, retried
from service.errors import N_, WebhookDeliveryNotFound, WebhookEndpointNotFound, WebhookUrlRefused
from service.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from service.pagination import Page

ACTIVATION_CREATED = "activation.created"
ACTIVATION_VOIDED = "activation.voided"
INSTALLATION_REGISTERED = "installation.registered"
KEY_REVOKED = "key.revoked"
SUPPORT_EXPIRING = "installation.support_expiring"
SUPPORT_LAPSED = "installation.support_lapsed"
EVENT_TYPES = (
    ACTIVATION_CREATED,
    ACTIVATION_VOIDED,
    INSTALLATION_REGISTERED,
    KEY_REVOKED,
    SUPPORT_EXPIRING,
    SUPPORT_LAPSED,
)
EXCERPT_CHARACTERS = 500


# --- Events: written with the change they report, as they will be sent


SCHEMA_VERSION = 1
"""The envelope's `schema_version`: raised by a change that renames, removes or retypes a field of a body, so
that a receiver tells the shapes apart. Each event keeps the body it was written with: events queued before a
change are sent as they were written."""

Body = Callable[[Any], bytes]
"""An event's `data` as sent, written from the service's result: the API's own representation of it."""

_BODIES: dict[str, Body] = {}


def register_bodies(bodies: dict[str, Body]) -> None:
    """How each event type's `data` is written (`service.http.events`, where the API's models are): the service
    functions emit events, the HTTP layer owns their representation."""
    _BODIES.update(bodies)


def envelope(event_id: UUID, type: str, occurred_at: datetime, data: bytes) -> bytes:
    """The whole body as sent: the same bytes on every attempt, signed as they are."""
    return orjson.dumps(
        {
            "id": str(event_id),
            "type": type,
            "timestamp": occurred_at,
            "schema_version": SCHEMA_VERSION,
            "data": orjson.Fragment(data),
        }
    )


@dataclass(frozen=True)
class Event:
    id: UUID
    type: str
    occurred_at: datetime
    reseller_id: UUID | None
    body: bytes
    """As it will be sent (`envelope`)."""
    installation_id: int | None = None
    period_end: date | None = None
    traceparent: str | None = None
    """The trace of the request whose change it reports (W3C Trace Context): its deliveries carry it on."""

    @classmethod
    def of(cls, type: str, subject: object, *, reseller_id: UUID | None, now: datetime, **period: Any) -> "Event":
        """The event of `subject` (a service result), its body written now, once; and the trace of the request
        that made it, which its deliveries carry on."""
        event_id = uuid4()
        try:
            data = _BODIES[type](subject)
        except KeyError:
            raise LookupError(f"no body registered for {type} events (service.http.events)") from None
        return cls(
            event_id,
            type,
            now,
            reseller_id,
            envelope(event_id, type, now, data),
            **period,
            traceparent=tracing.current_traceparent(),
        )

    @property
    def params(self) -> dict[str, Any]:
        """Its values as the parameters of `_EMIT` (and of the one-statement activation's outbox row)."""
        return {
            "event_id": self.id,
            "event_type": self.type,
            "event_at": self.occurred_at,
            "event_reseller": self.reseller_id,
            "event_body": self.body.decode(),
            "event_installation": self.installation_id,
            "event_period": self.period_end,
            "event_traceparent": self.traceparent,
        }


EVENT_COLUMNS = {
    "id": "event_id",
    "type": "event_type",
    "occurred_at": "event_at",
    "reseller_id": "event_reseller",
    "body": "event_body",
    "installation_id": "event_installation",
    "period_end": "event_period",
    "traceparent": "event_traceparent",
}
_EMIT = insert(WebhookEvent).values({column: bindparam(name) for column, name in EVENT_COLUMNS.items()})


async def emit(session: Session, event: Event) -> None:
    """Inside the transaction of the change the event reports."""
    await session.execute(_EMIT, event.params)


# --- Endpoints


@dataclass(frozen=True)
class Endpoint:
    id: UUID
    reseller_id: UUID | None
    url: str
    event_types: tuple[str, ...] | None
    created_at: datetime
    disabled_at: datetime | None
    failing_since: datetime | None

    def wants(self, event_type: str, reseller_id: UUID | None) -> bool:
        """An operator's endpoint (no reseller) hears every reseller; a reseller's, its own events only."""
        return (self.event_types is None or event_type in self.event_types) and (
            self.reseller_id is None or self.reseller_id == reseller_id
        )


@dataclass(frozen=True)
class EndpointWithSecret:
    endpoint: Endpoint
    secret: str


_ENDPOINT_COLUMNS = (
    WebhookEndpoint.id,
    WebhookEndpoint.reseller_id,
    WebhookEndpoint.url,
    WebhookEndpoint.event_types,
    WebhookEndpoint.created_at,
    WebhookEndpoint.disabled_at,
    WebhookEndpoint.failing_since,
)


class _EndpointRow(NamedTuple):
    id: UUID
    reseller_id: UUID | None
    url: str
    event_types: str | None
    created_at: datetime
    disabled_at: datetime | None
    failing_since: datetime | None


def _endpoint(row: _EndpointRow) -> Endpoint:
    types = row.event_types
    return Endpoint(**{**row._asdict(), "event_types": None if types is None else tuple(json.loads(types))})


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class Destination:
    """Where a URL sends, as the sender reads it (httpx's parser): its scheme, host (an address, or a DNS name in
    ASCII), port, and the host's address when it is one."""

    scheme: str
    host: str
    port: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None


_DEFAULT_PORTS = {"https": 443, "http": 80}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def destination(url: str | httpx.URL) -> Destination:
    """The URL parsed by the code that sends to it (registration and every delivery call this), or
    `WebhookUrlRefused`: an absolute `https` (or `http`) URL without credentials, whose host is an address written
    as one, or a DNS name. A host a C resolver would read as an IPv4 address written otherwise (`0177.0.0.1`,
    `127.1`, `2130706433`) is neither."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        scheme, host, port = parsed.scheme, parsed.raw_host.decode("ascii").lower(), parsed.port
    except (httpx.InvalidURL, ValueError) as exc:  # IDNA's errors are UnicodeErrors, ValueErrors
        raise WebhookUrlRefused(N_("The URL cannot be read as a URL")) from exc
    if scheme not in _DEFAULT_PORTS or not host:
        raise WebhookUrlRefused(N_("The URL must be an absolute https URL"))
    if parsed.userinfo:
        raise WebhookUrlRefused(N_("The URL must not carry credentials"))
    if port is not None and not 0 < port < 65536:
        raise WebhookUrlRefused(N_("The URL cannot be read as a URL"))
    port = port or _DEFAULT_PORTS[scheme]
    try:
        return Destination(scheme, host, port, ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels) or _reads_as_ipv4(host):
        raise WebhookUrlRefused(N_("The URL's host is neither a name nor an address"))
    return Destination(scheme, host, port, None)


def _reads_as_ipv4(host: str) -> bool:
    """Taken by `inet_aton` (as C resolvers take it), or ending in an all-digit label, which no top-level domain
    is (`1.2.3.4.5`)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return host.removesuffix(".").rsplit(".", 1)[-1].isdigit()
    return True


class AllowedHosts:
    """`WEBHOOK_ALLOWED_HOSTS`: `host:port` entries (`[::1]:8080` for IPv6); a bare host allows its scheme's
    default port only. A destination allowed is exempt from `https` and from the address checks."""

    def __init__(self, entries: Sequence[str]):
        self._allowed: set[tuple[str, int | None]] = set()
        for entry in entries:
            # A scheme of no default port: `host:80` stays port 80, not "the default port" of either scheme.
            parsed = httpx.URL(f"allowed://{entry}")
            if not parsed.host or parsed.path not in ("", "/") or parsed.userinfo:
                raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: {entry!r} is not a host or host:port")
            self._allowed.add((parsed.raw_host.decode("ascii").lower(), parsed.port))

    def allow(self, target: Destination) -> bool:
        return (target.host, target.port) in self._allowed or (
            target.port == _DEFAULT_PORTS[target.scheme] and (target.host, None) in self._allowed
        )


def check_url(url: str, allowed: AllowedHosts) -> None:
    """An endpoint's URL is one the sender reads (`destination`), `https`, and not an address that is not
    globally routable, unless its host and port are allowed (`WEBHOOK_ALLOWED_HOSTS`). A name is checked again on
    every delivery, on the address it resolves to."""
    target = destination(url)
    if allowed.allow(target):
        return
    if target.scheme != "https":
        raise WebhookUrlRefused(N_("The URL must be https"))
    if target.address is not None and not public(target.address):
        raise WebhookUrlRefused(N_("The URL's address is not a public one"))


# What is not globally routable, by IANA's special-purpose registries (RFC 6890 and its updates), as ranges
# rather than Python's `is_global` alone, whose table changes between patch releases. IPv6 outside 2000::/3 (the
# global unicast space) is refused whole, and so is every IPv6 form that carries an IPv4 address a gateway may
# reach (mapped, translated, compatible, NAT64, 6to4, Teredo), whatever the IPv4 address inside.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable: not loopback, private, link-local (the clouds' metadata service), shared, reserved,
    documentation or multicast, nor an IPv6 address outside the global unicast space or carrying an IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return False
    return address.is_global and not any(address in network for network in _NOT_GLOBAL)


_INSERT_ENDPOINT = Rows(
    insert(WebhookEndpoint)
    .values({column: bindparam(column) for column in ("id", "reseller_id", "url", "event_types", "secret")})
    .returning(*_ENDPOINT_COLUMNS),
    _EndpointRow,
)
_ENDPOINT = Rows(select(*_ENDPOINT_COLUMNS).where(WebhookEndpoint.id == bindparam("id")), _EndpointRow)


@retried
async def create_endpoint(
    *,
    driver: Driver,
    principal: Principal,
    url: str,
    event_types: Sequence[str] | None,
    reseller_id: UUID | None,
    allowed_hosts: AllowedHosts,
    audit: Pending[EndpointWithSecret] | None = None,
) -> EndpointWithSecret:
    """A reseller's endpoint hears its own events; an admin's, those of the reseller it names, or with none
    every reseller's. No event types: every type."""
    check_url(url, allowed_hosts)
    if reseller_id is not None:
        principal.require_owner(reseller_id)
    owner = reseller_id if principal.is_admin else principal.reseller_id
    secret = new_secret()
    values = {
        "id": uuid4(),
        "reseller_id": owner,
        "url": url,
        "event_types": None if event_types is None else json.dumps(sorted(set(event_types))),
        "secret": secret,
    }
    async with driver.transaction() as session:
        await resellers.require(session, owner)
        row = await session.first(_INSERT_ENDPOINT, values)
        assert row is not None, "an insert returns its row"
        created = EndpointWithSecret(_endpoint(row), secret)
        if audit is not None:
            await audit.write(session, created)
    return created


async def list_endpoints(
    *, driver: Driver, principal: Principal, cursor: str | None = None, limit: int = 100
) -> Page[Endpoint]:
    """An admin's: every endpoint; a reseller's: its own; in the order they were registered."""
    statement = select(*_ENDPOINT_COLUMNS).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id).limit(limit + 1)
    if not principal.is_admin:
        statement = statement.where(WebhookEndpoint.reseller_id == principal.reseller_id)
    if cursor is not None:
        after = pagination.decode(cursor, datetime, UUID)
        statement = statement.where(tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) > tuple_(*after))
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, _EndpointRow), {})
    return pagination.page_of(rows, limit, lambda row: (row.created_at, row.id)).map(_endpoint)


async def get_endpoint(*, driver: Driver, principal: Principal, endpoint_id: UUID) -> Endpoint:
    """An admin's: any endpoint; a reseller's: its own (another's is answered as one that does not exist)."""
    async with driver.reading() as session:
        return await _owned(session, principal, endpoint_id)


async def _owned(session: Session, principal: Principal, endpoint_id: UUID) -> Endpoint:
    row = await session.first(_ENDPOINT, {"id": endpoint_id})
    if row is None:
        raise WebhookEndpointNotFound()
    endpoint = _endpoint(row)
    if not principal.is_admin and endpoint.reseller_id != principal.reseller_id:
        raise WebhookEndpointNotFound()  # another reseller's endpoint is none of this one's business
    return endpoint


_DISABLE = (
    update(WebhookEndpoint)
    .where(WebhookEndpoint.id == bindparam("endpoint"), WebhookEndpoint.disabled_at.is_(None))
    .values(disabled_at=bindparam("now"))
)


@retried
async def disable_endpoint(
    *, driver: Driver, principal: Principal, endpoint_id: UUID, now: datetime, audit: Pending[Endpoint] | None = None
) -> Endpoint:
    """Nothing more is sent to it; its pending deliveries wait. Disabling it again changes nothing."""
    async with driver.transaction() as session:
        await _owned(session, principal, endpoint_id)
        await session.execute(_DISABLE, {"endpoint": endpoint_id, "now": now})
        disabled = await _owned(session, principal, endpoint_id)
        if audit is not None:
            await audit.write(session, disabled)
    return disabled


_DELETE = delete(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("id"))
_DELETE_DELIVERIES = delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == bindparam("id"))


@retried
async def delete_endpoint(*, driver: Driver, principal: Principal, endpoint_id: UUID) -> None:
    """The endpoint and its deliveries; the events stay, for the other endpoints."""
    async with driver.transaction() as session:
        await _owned(session, principal, endpoint_id)
        await session.execute(_DELETE_DELIVERIES, {"id": endpoint_id})
        await session.execute(_DELETE, {"id": endpoint_id})


_ROTATE = (
    update(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("endpoint")).values(secret=bindparam("new_secret"))
)


@retried
async def rotate_secret(
    *, driver: Driver, principal: Principal, endpoint_id: UUID, audit: Pending[EndpointWithSecret] | None = None
) -> EndpointWithSecret:
    """A new signing secret, shown once: every delivery from now on, retries included, is signed with it."""
    secret = new_secret()
    async with driver.transaction() as session:
        rotated = EndpointWithSecret(await _owned(session, principal, endpoint_id), secret)
        await session.execute(_ROTATE, {"endpoint": endpoint_id, "new_secret": secret})
        if audit is not None:
            await audit.write(session, rotated)
    return rotated


# --- Deliveries, as the operator sees them


class Delivery(NamedTuple):
    """A delivery as the operator sees it: also the row its statements read (`_DELIVERY_COLUMNS`)."""

    id: UUID
    event_id: UUID
    event_type: str
    occurred_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    response_excerpt: str | None
    delivered_at: datetime | None


_DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.event_id,
    WebhookEvent.type.label("event_type"),
    WebhookEvent.occurred_at,
    WebhookDelivery.status,
    WebhookDelivery.attempts,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.last_attempt_at,
    WebhookDelivery.last_status_code,
    WebhookDelivery.last_error,
    WebhookDelivery.response_excerpt,
    WebhookDelivery.delivered_at,
)


_DELIVERIES_STATEMENT = (
    select(*_DELIVERY_COLUMNS)
    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
    .where(WebhookDelivery.endpoint_id == bindparam("endpoint_id"))
    .order_by(WebhookEvent.occurred_at.desc(), WebhookDelivery.id)
    .limit(bindparam("limit"))
)
_DELIVERIES = Rows(_DELIVERIES_STATEMENT, Delivery)
_DELIVERY = Rows(_DELIVERIES_STATEMENT.where(WebhookDelivery.id == bindparam("id")), Delivery)


async def list_deliveries(
    *, driver: Driver, principal: Principal, endpoint_id: UUID, cursor: str | None = None, limit: int = 100
) -> Page[Delivery]:
    """The endpoint's deliveries, newest event first."""
    statement = _DELIVERIES_STATEMENT
    if cursor is not None:
        occurred_at, after = pagination.decode(cursor, datetime, UUID)
        statement = statement.where(
            or_(
                WebhookEvent.occurred_at < occurred_at,
                and_(WebhookEvent.occurred_at == occurred_at, WebhookDelivery.id > after),
            )
        )
    async with driver.reading() as session:
        await _owned(session, principal, endpoint_id)
        rows = await session.all(Rows(statement, Delivery), {"endpoint_id": endpoint_id, "limit": limit + 1})
    return pagination.page_of(rows, limit, lambda row: (row.occurred_at, row.id))


# A pending delivery is left as it is: it is on its way, and may be in a worker's hands right now.
_REDELIVER = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id == bindparam("delivery"), WebhookDelivery.status != "pending")
    .values(status="pending", attempts=0, next_attempt_at=bindparam("now"))
)


@retried
async def redeliver(
    *,
    driver: Driver,
    principal: Principal,
    endpoint_id: UUID,
    delivery_id: UUID,
    now: datetime,
    audit: Pending[Delivery] | None = None,
) -> Delivery:
    """Send a delivered or failed delivery again now, with a fresh round of attempts and the same `webhook-id`;
    a pending one is on its way already, and stays as it is."""
    async with driver.transaction() as session:
        await _owned(session, principal, endpoint_id)
        params = {"endpoint_id": endpoint_id, "id": delivery_id, "limit": 1}
        if await session.first(_DELIVERY, params) is None:
            raise WebhookDeliveryNotFound()
        await session.execute(_REDELIVER, {"delivery": delivery_id, "now": now})
        row = await session.first(_DELIVERY, params)
        assert row is not None, "the delivery was found above in this transaction"
        if audit is not None:
            await audit.write(session, row)
    return row


# --- The worker's side: fanning out, claiming, recording


class _UndispatchedRow(NamedTuple):
    id: UUID
    type: str
    reseller_id: UUID | None


_UNDISPATCHED = Rows(
    select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.reseller_id)
    .where(WebhookEvent.dispatched_at.is_(None))
    .order_by(WebhookEvent.occurred_at, WebhookEvent.id)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True),
    _UndispatchedRow,
)
_ENABLED_ENDPOINTS = Rows(select(*_ENDPOINT_COLUMNS).where(WebhookEndpoint.disabled_at.is_(None)), _EndpointRow)
_DISPATCHED = update(WebhookEvent).where(WebhookEvent.id == bindparam("event")).values(dispatched_at=bindparam("now"))
_DELIVERY_ROW = ("id", "event_id", "endpoint_id", "status", "attempts", "next_attempt_at", "created_at")


@retried
async def dispatch(*, driver: Driver, now: datetime, batch: int = 100) -> int:
    """Fan a batch of new events out: a pending delivery for each enabled endpoint that wants it. Each event is
    fanned out once: its row stays locked until it is marked, and other workers skip it meanwhile. The events
    fanned out."""
    async with driver.transaction() as session:
        events = await session.all(_UNDISPATCHED, {"batch": batch})
        if not events:
            return 0
        endpoints = [_endpoint(row) for row in await session.all(_ENABLED_ENDPOINTS, {})]
        deliveries = [
            (uuid4(), event.id, endpoint.id, "pending", 0, now, now)
            for event in events
            for endpoint in endpoints
            if endpoint.wants(event.type, event.reseller_id)
        ]
        if deliveries:
            await session.copy(WebhookDelivery, _DELIVERY_ROW, deliveries)
        for event in events:
            await session.execute(_DISPATCHED, {"event": event.id, "now": now})
    return len(events)


@dataclass(frozen=True)
class Claim:
    """A delivery's attempt, the claiming worker's alone until `lease_end`."""

    delivery_id: UUID
    attempt: int
    endpoint_id: UUID
    url: str
    secret: str
    event_id: UUID
    event_type: str
    occurred_at: datetime
    body: str | None
    """As it is sent; None for an event queued before bodies were stored (`legacy_data`)."""
    legacy_data: str | None
    """An event queued before bodies were stored: the service's values it is written from at delivery."""
    traceparent: str | None


class _DueRow(NamedTuple):
    delivery_id: UUID
    attempts: int
    endpoint_id: UUID
    url: str
    secret: str
    event_id: UUID
    event_type: str
    occurred_at: datetime
    body: str | None
    legacy_data: str | None
    traceparent: str | None


_DUE = Rows(
    select(
        WebhookDelivery.id.label("delivery_id"),
        WebhookDelivery.attempts,
        WebhookEndpoint.id.label("endpoint_id"),
        WebhookEndpoint.url,
        WebhookEndpoint.secret,
        WebhookEvent.id.label("event_id"),
        WebhookEvent.type.label("event_type"),
        WebhookEvent.occurred_at,
        WebhookEvent.body,
        WebhookEvent.legacy_data,
        WebhookEvent.traceparent,
    )
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
    .where(
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= bindparam("now"),
        WebhookEndpoint.disabled_at.is_(None),
    )
    .order_by(WebhookDelivery.next_attempt_at)
    .limit(bindparam("batch"))
    .with_for_update(of=WebhookDelivery, skip_locked=True),
    _DueRow,
)
_LEASE = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id == bindparam("delivery"))
    .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=bindparam("lease_end"))
)


_OUT_OF_ATTEMPTS = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id == bindparam("delivery"))
    .values(status="failed", next_attempt_at=bindparam("now"), last_error="out of attempts: the last one never ended")
)


@retried
async def claim(*, driver: Driver, now: datetime, lease: timedelta, batch: int, max_attempts: int) -> list[Claim]:
    """The deliveries due, each claimed for `lease` (moved on by it, counted as an attempt): no other worker
    takes it meanwhile (`SKIP LOCKED` while claiming). A worker that dies with a claim leaves it due again when the
    lease ends: delivered at least once. One due again with `max_attempts` made (its last attempt never recorded) is
    failed, and its endpoint marked failing: a delivery always ends."""
    async with driver.transaction() as session:
        rows = await session.all(_DUE, {"now": now, "batch": batch})
        for row in rows:
            if row.attempts >= max_attempts:
                await session.execute(_OUT_OF_ATTEMPTS, {"delivery": row.delivery_id, "now": now})
                await session.execute(_FAILING, {"endpoint": row.endpoint_id, "now": now})
            else:
                await session.execute(_LEASE, {"delivery": row.delivery_id, "lease_end": now + lease})
    rows = [row for row in rows if row.attempts < max_attempts]
    return [
        Claim(
            delivery_id=row.delivery_id,
            attempt=row.attempts + 1,
            endpoint_id=row.endpoint_id,
            url=row.url,
            secret=row.secret,
            event_id=row.event_id,
            event_type=row.event_type,
            occurred_at=row.occurred_at,
            body=row.body,
            legacy_data=row.legacy_data,
            traceparent=row.traceparent,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None
    excerpt: str | None


def retry_delay(attempt: int, base_seconds: float, jitter: float) -> timedelta:
    """Exponential backoff: `base · 2^(attempt-1)`, spread by `jitter` (0 to 1) over ±25 % so that the
    deliveries that failed together are not retried together. With the defaults (5 s, 15 attempts) the
    last attempt comes about a day after the first."""
    return timedelta(seconds=base_seconds * 2 ** (attempt - 1) * (0.75 + jitter / 2))


_ATTEMPTED = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id == bindparam("delivery"),
        WebhookDelivery.attempts == bindparam("attempt"),
        WebhookDelivery.status == "pending",
    )
    .values(
        status=bindparam("outcome"),
        next_attempt_at=bindparam("due"),
        last_attempt_at=bindparam("now"),
        last_status_code=bindparam("status_code"),
        last_error=bindparam("error"),
        response_excerpt=bindparam("excerpt"),
        delivered_at=bindparam("delivered"),
    )
)
_HEALTHY = update(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("endpoint")).values(failing_since=None)
_FAILING = (
    update(WebhookEndpoint)
    .where(WebhookEndpoint.id == bindparam("endpoint"), WebhookEndpoint.failing_since.is_(None))
    .values(failing_since=bindparam("now"))
)


@retried
async def record(*, driver: Driver, claim: Claim, outcome: Outcome, now: datetime, retry_at: datetime | None) -> str:
    """What an attempt gave: delivered, due again at `retry_at`, or (no `retry_at`) failed for good, and the
    endpoint marked failing. An attempt overtaken meanwhile (redelivered, or its lease run out and claimed again)
    records nothing. The delivery's status after it."""
    status = "delivered" if outcome.delivered else ("pending" if retry_at is not None else "failed")
    params = {
        "delivery": claim.delivery_id,
        "attempt": claim.attempt,
        "outcome": status,
        "due": retry_at or now,
        "now": now,
        "status_code": outcome.status_code,
        "error": outcome.error and outcome.error[:200],
        "excerpt": outcome.excerpt and outcome.excerpt[:EXCERPT_CHARACTERS],
        "delivered": now if outcome.delivered else None,
    }
    async with driver.transaction() as session:
        if not await session.execute(_ATTEMPTED, params):
            return "overtaken"
        if status == "delivered":
            await session.execute(_HEALTHY, {"endpoint": claim.endpoint_id})
        elif status == "failed":
            await session.execute(_FAILING, {"endpoint": claim.endpoint_id, "now": now})
    return status


class _Oldest(NamedTuple):
    oldest: datetime | None


_OLDEST_UNDISPATCHED = Rows(
    select(func.min(WebhookEvent.occurred_at).label("oldest")).where(WebhookEvent.dispatched_at.is_(None)), _Oldest
)
_OLDEST_PENDING = Rows(
    select(func.min(WebhookEvent.occurred_at).label("oldest"))
    .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
    .where(WebhookDelivery.status == "pending"),
    _Oldest,
)


async def oldest_undelivered(*, driver: Driver) -> datetime | None:
    """When the oldest event not yet delivered everywhere it is wanted happened (None: there is none)."""
    async with driver.reading() as session:
        found = [
            row.oldest
            for statement in (_OLDEST_UNDISPATCHED, _OLDEST_PENDING)
            if (row := await session.first(statement, {})) is not None and row.oldest is not None
        ]
    return min(found, default=None)


# --- Failed deliveries across endpoints, for the operator


class FailedDelivery(NamedTuple):
    id: UUID
    endpoint_id: UUID
    url: str
    reseller_id: UUID | None
    event_type: str
    attempts: int
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None


_FAILED = Rows(
    select(
        WebhookDelivery.id,
        WebhookDelivery.endpoint_id,
        WebhookEndpoint.url,
        WebhookEndpoint.reseller_id,
        WebhookEvent.type.label("event_type"),
        WebhookDelivery.attempts,
        WebhookDelivery.last_attempt_at,
        WebhookDelivery.last_status_code,
        WebhookDelivery.last_error,
    )
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
    .where(WebhookDelivery.status == "failed")
    .order_by(WebhookDelivery.last_attempt_at.desc().nulls_last(), WebhookDelivery.id)
    .limit(bindparam("limit")),
    FailedDelivery,
)


async def failed_deliveries(*, driver: Driver, limit: int) -> list[FailedDelivery]:
    """Every endpoint's deliveries that ran out of attempts, the latest first (on `ix_webhook_deliveries_due`)."""
    async with driver.reading() as session:
        return await session.all(_FAILED, {"limit": limit})
