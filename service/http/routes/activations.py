"""`POST /v1/activations`: public; the keys are the credential. The `/activate` page activates through
`activate_keys` too: the same limits, metrics and events."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from service import activations, ledger
from service.activations import ActivationResult
from service.errors import DomainError
from service.http.deps import AdminDep, ClockDep, DriverDep, PrincipalDep, client_address, runtime_of
from service.http.idempotency import idempotent
from service.http.observability import ACTIVATIONS, event
from service.http.openapi import problems
from service.http.pagination import PagingDep
from service.http.schemas.activations import ActivationIn, ActivationOut, LedgerEntryOut, LedgerPage, VoidIn, VoidOut
from service.http.schemas.common import InstallationCode, SaneDate

router = APIRouter(prefix="/v1/activations", tags=["activations"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Activate keys on an installation",
    operation_id="activateKeys",
    response_model=ActivationOut,
    responses={
        200: {"description": "A replay: the first result, unchanged", "model": ActivationOut},
        **problems(
            "invalid_request",
            "licenses_insufficient",
            "installation_not_found",
            "key_not_found",
            "key_already_used",
            "key_revoked",
            "key_duplicated",
            "payload_too_large",
            "key_malformed",
            "rate_limited",
            "unavailable",
            invalid=(["body", "keys"], "too_long", {"max_length": 50}),
        ),
    },
)
async def activate(body: ActivationIn, request: Request) -> Response:
    """Apply 1 to 50 keys to an installation, today (the service's date, never the client's): each adds a
    year from the current support end, with 2 bonus months while support is still active
    ([R4](/docs/rules#r4), [R5](/docs/rules#r5)). All or nothing: if the keys would leave support lapsed, none
    is used (`402`, with the quote). Sending the same activation again is safe: it answers `200` with the
    first result and changes nothing."""
    result = await activate_keys(request, code=body.installation, raw_keys=body.keys)
    return Response(
        ActivationOut.json_of(result),
        status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
        media_type="application/json",
    )


async def activate_keys(request: Request, *, code: str, raw_keys: list[str]) -> ActivationResult:
    """Activate for the request's client, today, counted and logged as an activation."""
    runtime = runtime_of(request)
    now, today = runtime.clock.read()
    try:
        result = await activations.activate(
            driver=runtime.driver,
            limiter=runtime.activation_limiter,
            client=client_address(request),
            code=code,
            raw_keys=raw_keys,
            today=today,
            now=now,
            secret=runtime.key_secret,
            unit_price_minor=runtime.settings.unit_price_minor,
            signing_keys=runtime.signing_keys,
        )
    except DomainError as refusal:
        ACTIVATIONS.labels(refusal.code).inc()
        raise
    ACTIVATIONS.labels("replayed" if result.replayed else "activated").inc()
    if not result.replayed:
        event(
            "activation",
            activation_id=result.id,
            installation=result.installation,
            licenses=len(result.key_ids),
            months_added=result.renewal.months_added,
            support_end=result.renewal.after.end,
        )
    return result


@router.post(
    "/{activation_id}/void",
    summary="Void an activation (a refund or a mistake)",
    operation_id="voidActivation",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "activation_not_found",
        "void_has_dependents",
        "payload_too_large",
        "unavailable",
        invalid=(["path", "activation_id"], "uuid_parsing", {}),
    ),
)
@idempotent
async def void(activation_id: UUID, body: VoidIn, driver: DriverDep, clock: ClockDep, _admin: AdminDep) -> VoidOut:
    """Admins: the activation stays in the ledger marked void, its keys are revoked, and the installation's
    support is recomputed from its remaining activations. Every later live activation of the installation was
    computed on it: without `cascade` that is refused (`409 void_has_dependents`, listing them); with it they are
    voided too, newest first. The answer lists every activation voided and every key revoked. Voiding twice
    changes nothing."""
    result = await ledger.void(
        driver=driver, activation_id=activation_id, reason=body.reason, now=clock.now(), cascade=body.cascade
    )
    for voided in result.voided:
        event("void", activation_id=voided, installation=result.installation, support_end=result.support_end)
    return VoidOut.model_validate(result)


@router.get(
    "",
    summary="List activations: the ledger across installations",
    operation_id="listActivations",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "unavailable",
        invalid=(["query", "activated_from"], "value_error", {"error": "must be a date written YYYY-MM-DD"}),
    ),
)
async def list_activations(
    driver: DriverDep,
    principal: PrincipalDep,
    paging: PagingDep,
    installation: Annotated[InstallationCode | None, Query(description="One installation's (its code)")] = None,
    reseller_id: Annotated[UUID | None, Query(description="Admins only: one reseller's installations'")] = None,
    activated_from: Annotated[SaneDate | None, Query(description="Activated on this day or later")] = None,
    activated_to: Annotated[SaneDate | None, Query(description="Activated on this day or earlier")] = None,
    voided: Annotated[bool | None, Query(description="Only voided ones (`true`) or only live ones (`false`)")] = None,
) -> LedgerPage:
    """Admins (every installation's) and resellers (their own installations'): activations in the order they were
    recorded, voided ones included unless filtered out, each with its installation and the keys it used."""
    page = await ledger.entries(
        driver=driver,
        principal=principal,
        installation=installation,
        reseller_id=reseller_id,
        activated_from=activated_from,
        activated_to=activated_to,
        voided=voided,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    return paging.answer(LedgerPage, page, LedgerEntryOut.of_entry)
