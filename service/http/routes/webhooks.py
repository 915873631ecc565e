"""Webhook endpoints: registered (the signing secret shown once), listed, disabled, deleted, their secret rotated;
their deliveries seen and sent again."""

from uuid import UUID

from fastapi import APIRouter, Response, status

from service import webhooks
from service.http.deps import ClockDep, DriverDep, PrincipalDep, RuntimeDep
from service.http.idempotency import idempotent
from service.http.openapi import problems
from service.http.pagination import PagingDep
from service.http.schemas.webhooks import (
    DeliveryList,
    DeliveryOut,
    EndpointCreated,
    EndpointIn,
    EndpointList,
    EndpointOut,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
# Another reseller's endpoint is answered as one that does not exist.
_ONE_ENDPOINT = problems(
    "invalid_request",
    "unauthenticated",
    "webhook_endpoint_not_found",
    "unavailable",
    invalid=(["path", "endpoint_id"], "uuid_parsing", {}),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    operation_id="registerWebhookEndpoint",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "reseller_not_found",
        "payload_too_large",
        "unavailable",
        invalid=(["body", "url"], "string_too_short", {"min_length": 1}),
    ),
)
@idempotent
async def create(body: EndpointIn, driver: DriverDep, principal: PrincipalDep, runtime: RuntimeDep) -> EndpointCreated:
    """Admins and resellers: an `https` URL at a public address, and the events it wants (see `webhooks` in this
    document); none given, every event. A reseller's endpoint hears about its own installations and keys; an
    admin's, about those of the reseller it names, or with none, of every reseller. The signing secret is in this
    answer only."""
    new = await webhooks.create_endpoint(
        driver=driver,
        principal=principal,
        url=body.url,
        event_types=body.event_types,
        reseller_id=body.reseller_id,
        allowed_hosts=runtime.webhook_allowed_hosts,
    )
    return EndpointCreated.of_new(new)


@router.get(
    "",
    summary="List webhook endpoints",
    operation_id="listWebhookEndpoints",
    responses=problems("invalid_request", "unauthenticated", "unavailable"),
)
async def list_endpoints(driver: DriverDep, principal: PrincipalDep, paging: PagingDep) -> EndpointList:
    """Admins: every endpoint; resellers: their own; in the order they were registered. Never their secrets."""
    page = await webhooks.list_endpoints(driver=driver, principal=principal, cursor=paging.cursor, limit=paging.limit)
    return paging.answer(EndpointList, page, EndpointOut.of)


@router.post(
    "/{endpoint_id}/disable",
    summary="Disable a webhook endpoint",
    operation_id="disableWebhookEndpoint",
    responses=_ONE_ENDPOINT,
)
async def disable(endpoint_id: UUID, driver: DriverDep, principal: PrincipalDep, clock: ClockDep) -> EndpointOut:
    """Admins and the owning reseller: nothing more is sent to it. Disabling it again changes nothing."""
    endpoint = await webhooks.disable_endpoint(
        driver=driver, principal=principal, endpoint_id=endpoint_id, now=clock.now()
    )
    return EndpointOut.of(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    operation_id="deleteWebhookEndpoint",
    responses=_ONE_ENDPOINT,
)
async def delete(endpoint_id: UUID, driver: DriverDep, principal: PrincipalDep) -> Response:
    """Admins and the owning reseller: the endpoint and its deliveries are gone."""
    await webhooks.delete_endpoint(driver=driver, principal=principal, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="Rotate a webhook endpoint's signing secret",
    operation_id="rotateWebhookEndpointSecret",
    responses=_ONE_ENDPOINT,
)
@idempotent
async def rotate_secret(endpoint_id: UUID, driver: DriverDep, principal: PrincipalDep) -> EndpointCreated:
    """Admins and the owning reseller: a new secret, in this answer only; every delivery from now on, retries
    included, is signed with it."""
    rotated = await webhooks.rotate_secret(driver=driver, principal=principal, endpoint_id=endpoint_id)
    return EndpointCreated.of_new(rotated)


@router.get(
    "/{endpoint_id}/deliveries",
    summary="A webhook endpoint's deliveries",
    operation_id="listWebhookDeliveries",
    responses=_ONE_ENDPOINT,
)
async def deliveries(
    endpoint_id: UUID,
    driver: DriverDep,
    principal: PrincipalDep,
    paging: PagingDep,
) -> DeliveryList:
    """Admins and the owning reseller: the deliveries, newest event first, with what the last attempt got (its
    status code, the start of the answer)."""
    page = await webhooks.list_deliveries(
        driver=driver, principal=principal, endpoint_id=endpoint_id, cursor=paging.cursor, limit=paging.limit
    )
    return paging.answer(DeliveryList, page, DeliveryOut.of)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    summary="Send a webhook delivery again",
    operation_id="redeliverWebhook",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "webhook_endpoint_not_found",
        "webhook_delivery_not_found",
        "unavailable",
        invalid=(["path", "delivery_id"], "uuid_parsing", {}),
    ),
)
async def redeliver(
    endpoint_id: UUID, delivery_id: UUID, driver: DriverDep, principal: PrincipalDep, clock: ClockDep
) -> DeliveryOut:
    """Admins and the owning reseller: a delivered or failed delivery is due again now, with a fresh round of
    attempts and the same `webhook-id`. A pending one is on its way already: it stays as it is."""
    delivery = await webhooks.redeliver(
        driver=driver, principal=principal, endpoint_id=endpoint_id, delivery_id=delivery_id, now=clock.now()
    )
    return DeliveryOut.of(delivery)
