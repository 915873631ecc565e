"""Keys: issue (shown once), list metadata, revoke."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from service import keys, pagination
from service.errors import N_, InvalidRequest
from service.http.deps import AdminDep, ClockDep, DriverDep, PrincipalDep, RuntimeDep
from service.http.idempotency import idempotent
from service.http.observability import KEYS_ISSUED, KEYS_REVOKED, event
from service.http.openapi import problems
from service.http.pagination import PagingDep
from service.http.schemas.keys import IssuedKeyOut, KeyOut, KeyPage, KeysIn, KeysIssued, KeyStatus

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Issue keys",
    operation_id="issueKeys",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "reseller_not_found",
        "payload_too_large",
        "unavailable",
        invalid=(["body", "count"], "greater_than_equal", {"ge": 1}),
    ),
)
@idempotent
async def issue(body: KeysIn, runtime: RuntimeDep, _admin: AdminDep) -> KeysIssued:
    """Admins: issue `count` keys, optionally to a reseller. The keys are in this answer only: the service
    keeps a keyed hash of each."""
    issued = await keys.issue(
        driver=runtime.driver, count=body.count, secret=runtime.key_secret, reseller_id=body.reseller_id
    )
    KEYS_ISSUED.inc(len(issued))
    event("keys_issued", count=len(issued), reseller_id=body.reseller_id, first_key_id=issued[0].id)
    return KeysIssued(
        reseller_id=body.reseller_id, keys=[IssuedKeyOut(key_id=k.id, key=k.key, prefix=k.prefix) for k in issued]
    )


@router.get(
    "",
    summary="List key metadata (never the keys themselves)",
    operation_id="listKeys",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "unavailable",
        invalid=(["query", "limit"], "greater_than_equal", {"ge": 1}),
    ),
)
async def list_keys(
    driver: DriverDep,
    principal: PrincipalDep,
    paging: PagingDep,
    status: Annotated[KeyStatus | None, Query()] = None,
    reseller_id: Annotated[UUID | None, Query(description="Admins only: one reseller's keys")] = None,
    after: Annotated[
        UUID | None,
        Query(deprecated=True, description="Deprecated since 0.2 (use `cursor`): the `next_after` of a page"),
    ] = None,
) -> KeyPage:
    """Admins (all keys) and resellers (their own): key metadata in id order, a page at a time, filterable by
    status."""
    cursor = paging.cursor
    if after is not None:
        if cursor is not None:
            raise InvalidRequest(N_("Give either cursor or after (its old name), not both"))
        cursor = pagination.encode(after)
    page = await keys.list_keys(
        driver=driver, principal=principal, status=status, reseller_id=reseller_id, cursor=cursor, limit=paging.limit
    )
    return paging.answer(KeyPage, page, KeyOut.of, next_after=page.items[-1].id if page.has_more else None)


@router.get(
    "/{key_id}",
    summary="A key's metadata (never the key itself)",
    operation_id="getKey",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "key_not_found",
        "unavailable",
        invalid=(["path", "key_id"], "uuid_parsing", {}),
    ),
)
async def get(key_id: UUID, driver: DriverDep, principal: PrincipalDep) -> KeyOut:
    """Admins (any key) and the owning reseller: a key's status, and the activation that used it. Another
    reseller's key is answered as one that does not exist."""
    return KeyOut.of(await keys.get(driver=driver, principal=principal, key_id=key_id))


@router.post(
    "/{key_id}/revoke",
    summary="Revoke an unused key",
    operation_id="revokeKey",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "key_not_found",
        "key_already_used",
        "unavailable",
        invalid=(["path", "key_id"], "uuid_parsing", {}),
    ),
)
async def revoke(key_id: UUID, driver: DriverDep, clock: ClockDep, _admin: AdminDep) -> KeyOut:
    """Admins: revoke an unused key so that it can never be activated. Revoking it again changes nothing."""
    info = await keys.revoke(driver=driver, key_id=key_id, now=clock.now())
    KEYS_REVOKED.inc()
    event("key_revoked", key_id=key_id)
    return KeyOut.of(info)
