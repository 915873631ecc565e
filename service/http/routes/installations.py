"""Installations: register, read with activations, the public support state and renewal quotes."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from pydantic import Field, StringConstraints

from service import installations, rules
from service.http.deps import ClockDep, DriverDep, PrincipalDep, SettingsDep, TodayDep, runtime_of
from service.http.idempotency import idempotent
from service.http.openapi import BAD_CODE, json_response, problems
from service.http.pagination import PagingDep
from service.http.schemas.common import InstallationCode, SaneDate, WrittenInDigits
from service.http.schemas.installations import (
    InstallationIn,
    InstallationOut,
    InstallationPage,
    NewSale,
    PipelineItemOut,
    PipelineState,
    QuoteOut,
    SupportOut,
)

router = APIRouter(tags=["installations"])

CodePath = Annotated[InstallationCode, Path(description="The installation's code")]
OnQuery = Annotated[SaneDate | None, Query(description="The day to quote for; default today")]
LicensesQuery = Annotated[
    Annotated[int, Field(ge=1, le=1000), WrittenInDigits] | None, Query(description="Default: the number required")
]


@router.post(
    "/v1/installations",
    status_code=status.HTTP_201_CREATED,
    summary="Register an installation",
    operation_id="registerInstallation",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "reseller_not_found",
        "installation_exists",
        "payload_too_large",
        "unavailable",
        invalid=(["body", "sale", "purchased_on"], "value_error", {"error": "day is out of range for month"}),
    ),
)
@idempotent
async def register(
    body: Annotated[InstallationIn, Body()],
    driver: DriverDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> InstallationOut:
    """A new sale gives `purchased_on` (a year of support from that day, [R3](/docs/rules#r3)); an existing
    customer moved from another system gives its known `support_end` ([R2](/docs/rules#r2)). A reseller
    registers for itself, only sales, and only sales of the last `PURCHASE_MAX_AGE_DAYS` days (default 30);
    an admin registers any of them."""
    now, today = clock.read()
    record = await installations.register(
        driver=driver,
        principal=principal,
        code=body.code,
        today=today,
        now=now,
        purchased_on=body.purchased_on if isinstance(body, NewSale) else None,
        support_end=None if isinstance(body, NewSale) else body.support_end,
        reseller_id=body.reseller_id,
        purchase_max_age_days=settings.purchase_max_age_days,
    )
    return InstallationOut.of(record)


@router.get(
    "/v1/installations/{code}",
    summary="An installation with its activations",
    operation_id="getInstallation",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "installation_not_found",
        "unavailable",
        invalid=(["path", "code"], "string_pattern_mismatch", BAD_CODE),
    ),
)
async def get(code: CodePath, driver: DriverDep, principal: PrincipalDep) -> InstallationOut:
    """Admins and the owning reseller: the installation and its ledger of activations, in the order applied."""
    record, activations = await installations.details(driver=driver, principal=principal, code=code)
    return InstallationOut.of(record, activations)


@router.get(
    "/v1/installations/{code}/support",
    summary="Support state (what Help → About shows)",
    operation_id="getSupportState",
    response_model=SupportOut,
    responses=problems(
        "invalid_request",
        "installation_not_found",
        "unavailable",
        invalid=(["path", "code"], "string_pattern_mismatch", BAD_CODE),
    ),
)
async def support(code: CodePath, request: Request) -> Response:
    """Public: the support end, whether support is active today, and what the installation is entitled to
    ([R9](/docs/rules#r9)), with a signed `certificate` a Timex client can check offline against
    `/.well-known/jwks.json`."""
    runtime = runtime_of(request)
    now, today = runtime.clock.read()
    state = await installations.support_state(driver=runtime.driver, code=code, today=today)
    signer = (await runtime.signing_keys.current()).signer(now)
    certificate = runtime.issued_certificates.certificate(signer, code, state.support.end, today, now)
    return Response(SupportOut.json_of(state, certificate), media_type="application/json")


@router.get(
    "/v1/installations/{code}/quote",
    summary="What renewing an installation costs",
    operation_id="quoteRenewal",
    response_model=QuoteOut,
    responses=problems(
        "invalid_request",
        "installation_not_found",
        "unavailable",
        invalid=(["query", "on"], "value_error", {"error": "must be a date written YYYY-MM-DD"}),
    ),
)
async def quote(code: CodePath, request: Request, on: OnQuery = None, licenses: LicensesQuery = None) -> Response:
    """Public: how many licenses renewing takes on a day ([R7](/docs/rules#r7): every missed year once lapsed
    over a year), what they cost ([R8](/docs/rules#r8)), and the support end they would give. Fewer licenses
    than required: `sufficient` is false."""
    runtime = runtime_of(request)
    settings = runtime.settings
    result = await installations.quote(
        driver=runtime.driver,
        code=code,
        on=on or runtime.clock.today(),
        unit_price_minor=settings.unit_price_minor,
        licenses=licenses,
    )
    return json_response(QuoteOut.of(result, settings.currency))


@router.get(
    "/v1/quote",
    summary="What renewing costs, from a bare support end",
    operation_id="quoteFromSupportEnd",
    responses=problems("invalid_request", invalid=(["query", "support_end"], "missing", {})),
)
async def quote_from_support_end(
    support_end: Annotated[SaneDate, Query(description="The customer's current support end")],
    settings: SettingsDep,
    today: TodayDep,
    on: OnQuery = None,
    licenses: LicensesQuery = None,
) -> QuoteOut:
    """Public: the same quote for a customer not registered yet, from its current support end."""
    result = rules.quote(rules.existing_customer(support_end), on or today, settings.unit_price_minor, licenses)
    return QuoteOut.of(result, settings.currency)


# After the hot routes: the app matches routes in order (see `create_app`).
@router.get(
    "/v1/installations",
    summary="List installations by support end: the renewal pipeline",
    operation_id="listInstallations",
    responses=problems(
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "unavailable",
        invalid=(["query", "state"], "literal_error", {"expected": "'active', 'expiring' or 'lapsed'"}),
    ),
)
async def list_installations(
    driver: DriverDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    today: TodayDep,
    paging: PagingDep,
    reseller_id: Annotated[UUID | None, Query(description="Admins only: one reseller's installations")] = None,
    support_end_from: Annotated[SaneDate | None, Query(description="Support ending on this day or later")] = None,
    support_end_to: Annotated[SaneDate | None, Query(description="Support ending on this day or earlier")] = None,
    state: Annotated[PipelineState | None, Query(description="Where support stands today")] = None,
    expiring_within_days: Annotated[
        int, Field(ge=0, le=3660), WrittenInDigits, Query(description="How soon an `expiring` support ends")
    ] = 60,
    code_prefix: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", to_upper=True),
        Query(description="Codes starting with this (any case)"),
    ] = None,
) -> InstallationPage:
    """Admins (every installation) and resellers (their own), ordered by support end, soonest first: each with
    its days left, where it stands, and what renewing it today costs. `state=expiring` finds the customers to
    call now: those who renew before their support ends earn 2 bonus months ([R5](/docs/rules#r5))."""
    page = await installations.pipeline(
        driver=driver,
        principal=principal,
        today=today,
        unit_price_minor=settings.unit_price_minor,
        reseller_id=reseller_id,
        support_end_from=support_end_from,
        support_end_to=support_end_to,
        state=state,
        expiring_within_days=expiring_within_days,
        code_prefix=code_prefix,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    return paging.answer(InstallationPage, page, lambda row: PipelineItemOut.of(row, settings.currency))
