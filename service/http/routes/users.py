"""Cabinet users and the audit log, for admins: invite a user (its setup link shown once), list, disable and
enable users, reset a user's two-step sign-in; read who did what."""

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, status
from pydantic import Field

from service import audit, pagination, users
from service.audit import Actor
from service.auth import Principal
from service.errors import N_, InvalidRequest
from service.http.deps import AdminDep, ClockDep, DriverDep, SettingsDep, client_address
from service.http.openapi import problems
from service.http.pagination import PagingDep
from service.http.schemas.common import WrittenInDigits
from service.http.schemas.users import AuditEventOut, AuditEventPage, UserIn, UserInvited, UserOut, UserPage
from service.settings import Settings

router = APIRouter(tags=["users"])


def token_actor(request: Request, principal: Principal) -> Actor:
    return Actor(name=f"token:{principal.subject}"[:100], address=client_address(request))


def setup_url(settings: Settings, request_base: str, token: str) -> str:
    """The user's setup link: on `CABINET_URL` when set (the address people reach the service at), else on the
    address this request came to."""
    return f"{(settings.cabinet_url or request_base).rstrip('/')}{users.setup_path(token)}"


@router.post(
    "/v1/users",
    status_code=status.HTTP_201_CREATED,
    summary="Invite a cabinet user",
    operation_id="inviteUser",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "reseller_not_found",
        "user_exists",
        "payload_too_large",
        "unavailable",
        invalid=(["body", "role"], "literal_error", {"expected": "'admin' or 'reseller'"}),
    ),
)
async def invite(
    body: UserIn, request: Request, driver: DriverDep, clock: ClockDep, settings: SettingsDep, admin: AdminDep
) -> UserInvited:
    """Admins: a user of the cabinet, staff (`admin`) or acting for one reseller (`reseller`, naming it). The
    answer's `setup_url` is where the user sets its password: shown once, good for `CABINET_SETUP_HOURS`."""
    invitation = await users.invite(
        driver=driver,
        actor=token_actor(request, admin),
        username=body.username,
        role=body.role,
        reseller_id=body.reseller_id,
        now=clock.now(),
        setup_lifetime=timedelta(hours=settings.cabinet_setup_hours),
    )
    user = invitation.user
    assert user.setup_expires_at is not None, "an invitation has a setup link"
    return UserInvited(
        **UserOut.of(user).model_dump(),
        setup_url=setup_url(settings, str(request.base_url), invitation.setup_token),
        setup_expires_at=user.setup_expires_at,
    )


@router.get(
    "/v1/users",
    summary="List cabinet users",
    operation_id="listUsers",
    responses=problems("invalid_request", "unauthenticated", "forbidden", "unavailable"),
)
async def list_users(
    driver: DriverDep,
    _admin: AdminDep,
    paging: PagingDep,
    reseller_id: Annotated[UUID | None, Query(description="One reseller's users")] = None,
) -> UserPage:
    """Admins: every user (admins first, then by username), or one reseller's, a page at a time."""
    page = await users.page_of_users(driver=driver, reseller_id=reseller_id, cursor=paging.cursor, limit=paging.limit)
    return paging.answer(UserPage, page, UserOut.of)


_ONE_USER = problems(
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "user_not_found",
    "unavailable",
    invalid=(["path", "user_id"], "uuid_parsing", {}),
)


@router.post("/v1/users/{user_id}/disable", summary="Disable a user", operation_id="disableUser", responses=_ONE_USER)
async def disable(user_id: UUID, request: Request, driver: DriverDep, clock: ClockDep, admin: AdminDep) -> UserOut:
    """Admins: the user cannot sign in, and its open sessions end at once. Disabling it again changes nothing."""
    user = await users.disable(driver=driver, actor=token_actor(request, admin), user_id=user_id, now=clock.now())
    return UserOut.of(user)


@router.post("/v1/users/{user_id}/enable", summary="Enable a user", operation_id="enableUser", responses=_ONE_USER)
async def enable(user_id: UUID, request: Request, driver: DriverDep, clock: ClockDep, admin: AdminDep) -> UserOut:
    """Admins: the user may sign in again."""
    user = await users.enable(driver=driver, actor=token_actor(request, admin), user_id=user_id, now=clock.now())
    return UserOut.of(user)


@router.post(
    "/v1/users/{user_id}/reset-totp",
    summary="Reset a user's two-step sign-in",
    operation_id="resetUserTotp",
    responses=_ONE_USER,
)
async def reset_totp(user_id: UUID, request: Request, driver: DriverDep, clock: ClockDep, admin: AdminDep) -> UserOut:
    """Admins: for a user who lost its authenticator app. Two-step sign-in is off and its open sessions end at once;
    it signs in with its password and sets two-step sign-in up again (an admin must, with `CABINET_ADMIN_TOTP`)."""
    user = await users.reset_totp(driver=driver, actor=token_actor(request, admin), user_id=user_id, now=clock.now())
    return UserOut.of(user)


@router.get(
    "/v1/audit-events",
    summary="The audit log",
    operation_id="listAuditEvents",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "unavailable",
        invalid=(["query", "limit"], "greater_than_equal", {"ge": 1}),
    ),
)
async def list_audit_events(
    driver: DriverDep,
    _admin: AdminDep,
    paging: PagingDep,
    reseller_id: Annotated[UUID | None, Query(description="Actions on one reseller's business")] = None,
    before: Annotated[
        int | None,
        Field(ge=1, le=2**63 - 1),  # an id is a PostgreSQL bigint
        WrittenInDigits,
        Query(deprecated=True, description="Deprecated (use `cursor`): the `next_before` of the previous page"),
    ] = None,
) -> AuditEventPage:
    """Admins: every action taken in the cabinet, and on users through this API, newest first: who (the user, or
    the API token's subject), what, on what, when and from which address."""
    if paging.cursor is not None:
        if before is not None:
            raise InvalidRequest(N_("Give either cursor or before (its old name), not both"))
        (before,) = pagination.decode(paging.cursor, int)
    found, has_more = await audit.entries(driver=driver, before=before, limit=paging.limit, reseller_id=reseller_id)
    last = found[-1].id if has_more else None
    page = pagination.Page(found, None if last is None else pagination.encode(last))
    return paging.answer(AuditEventPage, page, AuditEventOut.of, next_before=last)
