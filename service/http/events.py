"""The events as sent to webhook endpoints: each one's `data` written once, when the change happens, with the
same models the API answers with (`BODIES`, which the service's events are written with), and their description
in the OpenAPI document (`webhooks`)."""

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter

from service import webhooks
from service.activations import ActivationNotice, ActivationResult
from service.http.schemas.activations import ActivationCreatedData, VoidOut
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


def _installation(record: InstallationRecord) -> bytes:
    return _json(InstallationOut.of(record))


BODIES: dict[str, webhooks.Body] = {
    webhooks.ACTIVATION_CREATED: ActivationCreatedData.json_of,
    webhooks.ACTIVATION_VOIDED: lambda voided: _json(VoidOut.model_validate(voided)),
    webhooks.INSTALLATION_REGISTERED: _installation,
    webhooks.KEY_REVOKED: lambda key: _json(KeyOut.of(key)),
    webhooks.SUPPORT_EXPIRING: _installation,
    webhooks.SUPPORT_LAPSED: _installation,
}
webhooks.register_bodies(BODIES)


# --- Events queued before bodies were stored (migration 0010): rendered from the values they kept, at delivery.
# Kept while such an event may still be pending: remove once every deployment has delivered them.


def _restore(kind: type, data: str | bytes) -> Any:
    return TypeAdapter(kind).validate_json(data)


def _legacy_activation(data: str) -> ActivationNotice:
    """Its `key_ids` with those of other resellers' keys null (the migration hid them)."""
    values = json.loads(data)
    key_ids = tuple(values.pop("key_ids"))
    return ActivationNotice(_restore(ActivationResult, json.dumps({**values, "key_ids": []})), key_ids)


_LEGACY_SUBJECTS: dict[str, Callable[[str], object]] = {
    webhooks.ACTIVATION_CREATED: _legacy_activation,
    webhooks.ACTIVATION_VOIDED: lambda data: _restore(VoidResult, data),
    webhooks.INSTALLATION_REGISTERED: lambda data: _restore(InstallationRecord, data),
    webhooks.KEY_REVOKED: lambda data: _restore(KeyInfo, data),
    webhooks.SUPPORT_EXPIRING: lambda data: _restore(InstallationRecord, data),
    webhooks.SUPPORT_LAPSED: lambda data: _restore(InstallationRecord, data),
}


def render(claim: webhooks.Claim) -> bytes:
    """The body of a delivery: the stored one; for an event queued before bodies were stored, the one written
    from its values, the same on every attempt."""
    if claim.body is not None:
        return claim.body.encode()
    assert claim.legacy_data is not None, "an event has a body or its values (ck_webhook_events_body_or_legacy_data)"
    data = BODIES[claim.event_type](_LEGACY_SUBJECTS[claim.event_type](claim.legacy_data))
    return webhooks.envelope(claim.event_id, claim.event_type, claim.occurred_at, data)


_SIGNED = """

Sent as `POST` with `content-type: application/json` and Standard Webhooks' headers: `webhook-id` (the event's
`id`, the same on every retry: deduplicate on it), `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the endpoint's secret).
Answer with a `2xx` within the timeout (5 s); anything else is tried again, with exponential backoff over about
a day. Redirects are not followed. The body is written when the event happens and sent as written, on every
attempt: `schema_version` says its shape."""

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
