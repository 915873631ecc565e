"""The events as sent to webhook endpoints: each one's body, written at delivery from the values the outbox kept
with the same models the API answers with, and their description in the OpenAPI document (`webhooks`)."""

from collections.abc import Callable

import orjson
from fastapi import FastAPI
from pydantic import BaseModel

from service import webhooks
from service.activations import ActivationResult
from service.http.schemas.activations import ActivationOut, VoidOut
from service.http.schemas.installations import InstallationOut
from service.http.schemas.keys import KeyOut
from service.http.schemas.webhooks import (
    ActivationCreated,
    ActivationVoided,
    InstallationRegistered,
    KeyRevoked,
    SupportExpiring,
    SupportLapsed,
)
from service.installations import InstallationRecord
from service.keys import KeyInfo
from service.ledger import VoidResult


def _json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def _installation(data: str) -> bytes:
    return _json(InstallationOut.of(webhooks.restore(InstallationRecord, data)))


_DATA: dict[str, Callable[[str], bytes]] = {
    webhooks.ACTIVATION_CREATED: lambda data: ActivationOut.json_of(webhooks.restore(ActivationResult, data)),
    webhooks.ACTIVATION_VOIDED: lambda data: _json(VoidOut.model_validate(webhooks.restore(VoidResult, data))),
    webhooks.INSTALLATION_REGISTERED: _installation,
    webhooks.KEY_REVOKED: lambda data: _json(KeyOut.of(webhooks.restore(KeyInfo, data))),
    webhooks.SUPPORT_EXPIRING: _installation,
    webhooks.SUPPORT_LAPSED: _installation,
}


def render(claim: webhooks.Claim) -> bytes:
    """The body of a delivery: the same bytes on every attempt."""
    data = _DATA[claim.event_type](claim.data)
    return orjson.dumps(
        {
            "id": str(claim.event_id),
            "type": claim.event_type,
            "timestamp": claim.occurred_at,
            "data": orjson.Fragment(data),
        }
    )


_SIGNED = """

Sent as `POST` with `content-type: application/json` and Standard Webhooks' headers: `webhook-id` (the event's
`id`, the same on every retry: deduplicate on it), `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the endpoint's secret).
Answer with a `2xx` within the timeout (5 s); anything else is tried again, with exponential backoff over about
a day. Redirects are not followed."""

_EVENTS: tuple[tuple[str, type[BaseModel], str], ...] = (
    (webhooks.ACTIVATION_CREATED, ActivationCreated, "Keys were activated on an installation of the reseller's."),
    (webhooks.ACTIVATION_VOIDED, ActivationVoided, "An activation of an installation of the reseller's was voided."),
    (webhooks.INSTALLATION_REGISTERED, InstallationRegistered, "An installation was registered for the reseller."),
    (webhooks.KEY_REVOKED, KeyRevoked, "An unused key of the reseller's was revoked."),
    (
        webhooks.SUPPORT_EXPIRING,
        SupportExpiring,
        "An installation's support ends within `WEBHOOK_EXPIRING_DAYS` days (default 30): renewed before its end, "
        "it earns the 2 bonus months. Sent once per support period.",
    ),
    (
        webhooks.SUPPORT_LAPSED,
        SupportLapsed,
        "An installation's support ended yesterday (or lately, if no worker ran then). Sent once per support period.",
    ),
)


def install(app: FastAPI) -> None:
    """Each event in the document's `webhooks`, its body the envelope around the API's own representation."""
    for event_type, model, description in _EVENTS:

        async def receive(body: model) -> None:  # type: ignore[valid-type]  # one documented body per event
            """What the receiver is sent; it answers with a 2xx."""

        app.webhooks.post(event_type, summary=event_type, description=description + _SIGNED, tags=["webhooks"])(receive)
