"""Webhooks: endpoints (the signing secret shown once), their deliveries, and the events sent to them."""

from datetime import datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, Field

from service.http.schemas.activations import ActivationCreatedData, VoidOut
from service.http.schemas.common import PAGE_ITEMS, Count, JsonUuid, Line, PageOut, Request, examples
from service.http.schemas.installations import InstallationOut
from service.http.schemas.keys import KeyOut
from service.webhooks import Delivery, Endpoint, EndpointWithSecret

EventType = Literal[
    "activation.created",
    "activation.voided",
    "installation.registered",
    "key.revoked",
    "installation.support_expiring",
    "installation.support_lapsed",
]
EVENT_TYPES = get_args(EventType)
EXAMPLE_ENDPOINT_ID = "3c2b1a9e-5f0c-4a57-8f4b-9a510d3c2b1a"


class EndpointIn(Request):
    model_config = examples(
        {"url": "https://partner.example/hooks/timex", "event_types": ["activation.created", "activation.voided"]}
    )

    url: Line = Field(min_length=1, max_length=2000, description="`https`, at a public address.")
    event_types: list[EventType] | None = Field(
        None,
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="The events wanted; none given: every event, those added later too.",
    )
    reseller_id: JsonUuid | None = Field(
        None, description="Admins only: the reseller whose events it hears; none given, every reseller's."
    )


_ENDPOINT_EXAMPLE = {
    "id": EXAMPLE_ENDPOINT_ID,
    "reseller_id": None,
    "url": "https://partner.example/hooks/timex",
    "event_types": ["activation.created", "activation.voided"],
    "created_at": "2026-11-24T09:00:00Z",
    "disabled_at": None,
    "failing_since": None,
}


class EndpointOut(BaseModel):
    model_config = examples(_ENDPOINT_EXAMPLE)

    id: UUID
    reseller_id: UUID | None = Field(description="Whose events it hears; none: every reseller's (an admin's).")
    url: str = Field(max_length=2000)
    event_types: list[EventType] | None = Field(max_length=len(EVENT_TYPES), description="None: every event.")
    created_at: datetime
    disabled_at: datetime | None = Field(description="Set once disabled: nothing more is sent to it.")
    failing_since: datetime | None = Field(
        description="Set when a delivery ran out of attempts; cleared by the next delivery that succeeds."
    )

    @classmethod
    def of(cls, endpoint: Endpoint) -> "EndpointOut":
        return cls(
            id=endpoint.id,
            reseller_id=endpoint.reseller_id,
            url=endpoint.url,
            event_types=None if endpoint.event_types is None else list(endpoint.event_types),
            created_at=endpoint.created_at,
            disabled_at=endpoint.disabled_at,
            failing_since=endpoint.failing_since,
        )


class EndpointCreated(EndpointOut):
    model_config = examples({**_ENDPOINT_EXAMPLE, "secret": "whsec_(shown once)"})

    secret: str = Field(
        max_length=64,
        description="The signing secret (Standard Webhooks, `whsec_` and base64): shown once, in this answer.",
    )

    @classmethod
    def of_new(cls, new: EndpointWithSecret) -> "EndpointCreated":
        return cls(**EndpointOut.of(new.endpoint).model_dump(), secret=new.secret)


class EndpointList(PageOut):
    items: list[EndpointOut] = Field(max_length=PAGE_ITEMS)


class DeliveryOut(BaseModel):
    model_config = examples(
        {
            "id": "9e885f0c-6a57-4f4b-9c1e-2b1a0d3c9a51",
            "event_id": "1a9e885f-0c6a-472f-8b4c-1e9a510d3c2b",
            "event_type": "activation.created",
            "status": "pending",
            "attempts": 3,
            "next_attempt_at": "2026-11-24T09:00:35Z",
            "last_attempt_at": "2026-11-24T09:00:15Z",
            "last_status_code": 500,
            "last_error": "HTTP 500",
            "response_excerpt": "Internal Server Error",
            "delivered_at": None,
        },
        from_attributes=True,
    )

    id: UUID
    event_id: UUID = Field(description="The `webhook-id` it is sent with, the same on every attempt.")
    event_type: EventType
    status: Literal["pending", "delivered", "failed"] = Field(
        description="`failed`: out of attempts (about a day of them); `POST …/redeliver` sends it again."
    )
    attempts: Count
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: Annotated[int, Field(ge=100, le=599)] | None
    last_error: Annotated[str, Field(max_length=200)] | None
    response_excerpt: Annotated[str, Field(max_length=500)] | None = Field(
        description="The start of the receiver's last answer (500 characters)."
    )
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> "DeliveryOut":
        return cls.model_validate(delivery)


class DeliveryList(PageOut):
    items: list[DeliveryOut] = Field(max_length=PAGE_ITEMS)


# --- The events, as sent: the envelope, and the API's own representation of what they are about in `data`


class _Event(BaseModel):
    id: UUID = Field(description="The event's id, sent as `webhook-id`: the same on every retry.")
    timestamp: datetime = Field(description="When it happened.")
    schema_version: Literal[1] = Field(
        description="The shape of the body: raised by a change that renames, removes or retypes a field. Each "
        "event is sent as it was written when it happened.",
        json_schema_extra={"minimum": 1, "maximum": 1},  # the document's bounds, for generated clients and Spectral
    )


class ActivationCreated(_Event):
    type: Literal["activation.created"]
    data: ActivationCreatedData = Field(
        description="As `POST /v1/activations` answered, less the ids of keys another reseller sold."
    )


class ActivationVoided(_Event):
    type: Literal["activation.voided"]
    data: VoidOut = Field(
        description="As `POST /v1/activations/{activation_id}/void` answered, its `revoked_keys` only those the "
        "reseller sold."
    )


class InstallationRegistered(_Event):
    type: Literal["installation.registered"]
    data: InstallationOut = Field(description="As `POST /v1/installations` answered.")


class KeyRevoked(_Event):
    type: Literal["key.revoked"]
    data: KeyOut = Field(description="As `POST /v1/keys/{key_id}/revoke` answered.")


class SupportExpiring(_Event):
    type: Literal["installation.support_expiring"]
    data: InstallationOut = Field(description="The installation when found (its activations left out).")


class SupportLapsed(_Event):
    type: Literal["installation.support_lapsed"]
    data: InstallationOut = Field(description="The installation when found (its activations left out).")
