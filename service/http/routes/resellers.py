"""Resellers, for admins: register one (its client secret shown once), read it, disable and enable it, and
rotate its secret."""

from datetime import timedelta
from uuid import UUID

from fastapi import APIRouter, status

from service import resellers
from service.http.deps import AdminDep, ClockDep, DriverDep
from service.http.idempotency import idempotent
from service.http.observability import event
from service.http.openapi import problems
from service.http.pagination import PagingDep
from service.http.schemas.resellers import (
    ResellerCreated,
    ResellerIn,
    ResellerOut,
    ResellerPage,
    ResellerSecretRotated,
    RotateSecretIn,
)

router = APIRouter(prefix="/v1/resellers", tags=["resellers"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a reseller",
    operation_id="registerReseller",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "reseller_exists",
        "payload_too_large",
        "unavailable",
        invalid=(["body", "name"], "string_too_short", {"min_length": 1}),
    ),
)
@idempotent
async def register(body: ResellerIn, driver: DriverDep, _admin: AdminDep) -> ResellerCreated:
    """Admins: register a reseller. Its client secret is in this answer only; the service keeps a hash."""
    new = await resellers.register(driver=driver, name=body.name)
    return ResellerCreated.model_validate(new)


@router.get(
    "",
    summary="List resellers (never their secrets)",
    operation_id="listResellers",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "unavailable",
        invalid=(["query", "limit"], "greater_than_equal", {"ge": 1}),
    ),
)
async def list_resellers(driver: DriverDep, paging: PagingDep, _admin: AdminDep) -> ResellerPage:
    """Admins: every reseller, in the order they were registered, a page at a time."""
    page = await resellers.list_resellers(driver=driver, cursor=paging.cursor, limit=paging.limit)
    return paging.answer(ResellerPage, page, ResellerOut.model_validate)


_ONE_RESELLER = problems(
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "reseller_not_found",
    "unavailable",
    invalid=(["path", "reseller_id"], "uuid_parsing", {}),
)


@router.get(
    "/{reseller_id}", summary="A reseller (never its secret)", operation_id="getReseller", responses=_ONE_RESELLER
)
async def get(reseller_id: UUID, driver: DriverDep, _admin: AdminDep) -> ResellerOut:
    """Admins: a reseller, and whether it is disabled."""
    return ResellerOut.model_validate(await resellers.get(driver=driver, reseller_id=reseller_id))


@router.post(
    "/{reseller_id}/disable", summary="Disable a reseller", operation_id="disableReseller", responses=_ONE_RESELLER
)
async def disable(reseller_id: UUID, driver: DriverDep, clock: ClockDep, _admin: AdminDep) -> ResellerOut:
    """Admins: the reseller's access tokens are refused from this moment (`401`), not when they expire, and it
    gets no new ones. Its installations and keys stay as they are. Disabling it again changes nothing."""
    reseller = await resellers.disable(driver=driver, reseller_id=reseller_id, now=clock.now())
    event("reseller_disabled", reseller_id=reseller_id)
    return ResellerOut.model_validate(reseller)


@router.post(
    "/{reseller_id}/enable",
    summary="Enable a disabled reseller",
    operation_id="enableReseller",
    responses=_ONE_RESELLER,
)
async def enable(reseller_id: UUID, driver: DriverDep, _admin: AdminDep) -> ResellerOut:
    """Admins: the reseller may get tokens again, and its unexpired tokens work again."""
    reseller = await resellers.enable(driver=driver, reseller_id=reseller_id)
    event("reseller_enabled", reseller_id=reseller_id)
    return ResellerOut.model_validate(reseller)


@router.post(
    "/{reseller_id}/rotate-secret",
    summary="Give a reseller a new client secret",
    operation_id="rotateResellerSecret",
    responses=_ONE_RESELLER,
)
@idempotent
async def rotate_secret(
    reseller_id: UUID, driver: DriverDep, clock: ClockDep, _admin: AdminDep, body: RotateSecretIn | None = None
) -> ResellerSecretRotated:
    """Admins: a new client secret, in this answer only. Without `grace_seconds` (or with 0) the old secret stops
    working at once, and so does every access token issued before the rotation (the usual reason for one is a
    leaked secret). With it, the old secret still logs in until `previous_secret_until` (the answer and the
    reseller's record say when), while the reseller rolls the new one out to its servers."""
    grace = timedelta(seconds=body.grace_seconds if body else 0)
    rotated = await resellers.rotate_secret(driver=driver, reseller_id=reseller_id, now=clock.now(), grace=grace)
    event("reseller_secret_rotated", reseller_id=reseller_id, grace_seconds=int(grace.total_seconds()))
    return ResellerSecretRotated.of_rotation(rotated)
