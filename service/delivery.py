"""Delivering webhooks: the worker that sends the outbox's events, signed as Standard Webhooks, to the endpoints
that want them, on any number of processes (`timex-licensing worker`, or inside `serve`).

Sending is safe to point at the internet: each request goes to the address its host name resolved to, checked
first (loopback, private, link-local and metadata addresses only for `WEBHOOK_ALLOWED_HOSTS`), so that a name
that resolves to a public address when checked cannot reach an inner one when connected (DNS rebinding);
no redirect is followed, the timeouts are short, and only the start of an answer is read.
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from datetime import date, timedelta

import httpx
from prometheus_client import Counter

from service import notices, tracing, webhooks
from service.clock import Clock
from service.driver import Driver
from service.heartbeat import Heartbeat
from service.settings import Settings

log = logging.getLogger("service.webhooks")

DELIVERIES = Counter(
    "webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, retrying (failed, to be tried again), failed (out of attempts),"
    " overtaken (its lease ran out, or it was redelivered, meanwhile: recorded by the later attempt)",
    ["outcome"],
)

Render = Callable[[webhooks.Claim], bytes]
"""An event's body as sent: its envelope and its data in the API's representation (`service.http.events`)."""


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `webhook-signature`: HMAC-SHA256, keyed with the secret's bytes, over
    `id.timestamp.body`, in base64 after its version."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class AddressRefused(httpx.ConnectError):
    """The endpoint's host is, or resolves to, an address the service does not send to."""


class CheckedAddressTransport(httpx.AsyncBaseTransport):
    """Resolves the request's host, checks the address, and connects to that address, the request keeping the
    host's name in its `Host` header and in TLS (SNI and the certificate's check)."""

    def __init__(self, allowed_hosts: webhooks.AllowedHosts, inner: httpx.AsyncBaseTransport | None = None):
        self._allowed = allowed_hosts
        # No connection kept for another request: a pool matches connections by the address alone, so a TLS
        # session opened (and its certificate checked) for one name would carry another name's events.
        self._inner = inner or httpx.AsyncHTTPTransport(retries=0, limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            target = webhooks.destination(request.url)
        except webhooks.WebhookUrlRefused as exc:
            raise AddressRefused(exc.detail, request=request) from exc
        host = target.host
        allowed = self._allowed.allow(target)
        if target.scheme != "https" and not allowed:
            raise AddressRefused("only https is sent to", request=request)
        address = target.address or await self._address(host, target.port)
        if not allowed and not webhooks.public(address):
            raise AddressRefused(f"{host} resolves to an address that is not public", request=request)
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = request.url.copy_with(host=str(address))
        return await self._inner.handle_async_request(request)

    async def _address(self, host: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name no resolver takes (a label over 63 bytes)
            raise httpx.ConnectError(f"{host} cannot be resolved") from exc
        # One address, the first: checked, it is the one connected to.
        return ipaddress.ip_address(str(found[0][4][0]).partition("%")[0])

    async def aclose(self) -> None:
        await self._inner.aclose()


class Worker:
    """Looks for the calendar's events once a business day, fans new events out, and delivers those due."""

    def __init__(
        self,
        *,
        driver: Driver,
        clock: Clock,
        settings: Settings,
        render: Render,
        transport: httpx.AsyncBaseTransport | None = None,
        batch: int = 20,
    ):
        self._driver = driver
        self._clock = clock
        self._settings = settings
        self._render = render
        self._batch = batch
        timeout = settings.webhook_timeout_seconds
        self._client = httpx.AsyncClient(
            transport=transport or CheckedAddressTransport(webhooks.AllowedHosts(settings.webhook_allowed_hosts)),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            follow_redirects=False,
            # No proxy from the environment: a proxy would connect to the host itself, past the address checked.
            trust_env=False,
            # Uncompressed answers: only their start is read, and a compressed one could expand a thousandfold.
            headers={
                "user-agent": "timex-licensing-webhooks",
                "content-type": "application/json",
                "accept-encoding": "identity",
            },
        )
        # A claimed attempt is the worker's for this long: more than a request can take.
        self._lease = timedelta(seconds=timeout * 3 + 10)
        self._looked_on: date | None = None
        self._heartbeat = Heartbeat(settings.webhook_worker_heartbeat_file)

    async def run_once(self) -> int:
        """One round; the attempts it made."""
        now, today = self._clock.read()
        if today != self._looked_on:
            await notices.emit_support_notices(
                driver=self._driver, today=today, now=now, days_before=self._settings.webhook_expiring_days
            )
            self._looked_on = today
        while await webhooks.dispatch(driver=self._driver, now=now):
            pass
        claims = await webhooks.claim(
            driver=self._driver,
            now=now,
            lease=self._lease,
            batch=self._batch,
            max_attempts=self._settings.webhook_max_attempts,
        )
        # Each delivery on its own: one that fails (its record, say) leaves the others' outcomes recorded.
        outcomes = await asyncio.gather(*(self._deliver(claim) for claim in claims), return_exceptions=True)
        for claim, failure in zip(claims, outcomes, strict=True):
            if isinstance(failure, Exception):
                log.error("webhook delivery %s failed: %r", claim.event_id, failure)
        return len(claims)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop` is set, pausing `WEBHOOK_POLL_SECONDS` after a round with nothing due. A round
        that fails (the database unavailable) is logged and tried again after the pause. Each round that completes
        touches the heartbeat (`WEBHOOK_WORKER_HEARTBEAT_FILE`): one stuck, in a database call or anywhere,
        leaves it to age."""
        self._heartbeat.clear()
        log.info("webhook worker running")
        while not stop.is_set():
            try:
                attempts = await self.run_once()
            except Exception:
                log.exception("webhook round failed")
                attempts = 0
            else:
                self._heartbeat.beat()
            if attempts == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.webhook_poll_seconds)

    async def close(self) -> None:
        await self._client.aclose()

    async def _deliver(self, claim: webhooks.Claim) -> None:
        try:
            body = self._render(claim)
            message_id = str(claim.event_id)
            timestamp = int(self._clock.now().timestamp())
            # The delivery is a span of the trace of the request that caused it (a new trace for the service's own
            # events, found by the worker): the receiver can follow it back.
            trace = tracing.parsed(claim.traceparent) if claim.traceparent else None
            headers = {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(claim.secret, message_id, timestamp, body),
                "traceparent": (trace.child() if trace else tracing.continued(b"")).traceparent,
            }
            outcome = await self._send(claim.url, body, headers)
        except Exception as exc:
            # Whatever fails while rendering, signing or sending is this attempt's failure, recorded as any other:
            # a delivery always ends. Not httpx's (`_send` records those): a bug, whose trace goes to the log.
            log.exception("webhook %s of event %s could not be sent", claim.event_type, claim.event_id)
            outcome = webhooks.Outcome(False, None, f"{type(exc).__name__}: {exc}", None)
        now = self._clock.now()
        retry_at = None
        if not outcome.delivered and claim.attempt < self._settings.webhook_max_attempts:
            delay = webhooks.retry_delay(claim.attempt, self._settings.webhook_retry_base_seconds, random.random())
            retry_at = now + delay
        status = await webhooks.record(driver=self._driver, claim=claim, outcome=outcome, now=now, retry_at=retry_at)
        outcome_label = {"pending": "retrying"}.get(status, status)
        DELIVERIES.labels(outcome_label).inc()
        log.info(
            "webhook %s of event %s to endpoint %s, attempt %d: %s",
            claim.event_type,
            claim.event_id,
            claim.endpoint_id,
            claim.attempt,
            outcome_label if outcome.error is None else f"{outcome_label} ({outcome.error})",
        )

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> webhooks.Outcome:
        try:
            # httpx's timeout bounds each read; this bounds the whole attempt (a receiver answering a byte at a
            # time), well within the lease.
            async with (
                asyncio.timeout(self._settings.webhook_timeout_seconds),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                excerpt = await _start_of(response)
        except TimeoutError:
            return webhooks.Outcome(False, None, "TimeoutError: no whole answer in time", None)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # httpx's messages name no URL (which may carry the receiver's own token).
            return webhooks.Outcome(False, None, f"{type(exc).__name__}: {exc}", None)
        delivered = 200 <= response.status_code < 300
        error = None if delivered else f"HTTP {response.status_code}"
        return webhooks.Outcome(delivered, response.status_code, error, excerpt)


async def _start_of(response: httpx.Response) -> str:
    """The first characters of an answer, the rest never read."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= webhooks.EXCERPT_CHARACTERS:
            break
    return read[: webhooks.EXCERPT_CHARACTERS].decode(errors="replace")
