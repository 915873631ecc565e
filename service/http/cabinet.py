"""The cabinet: web pages under `/cabinet/` for resellers' people and Smartec's staff, in the style of `/activate`
(server-rendered, Russian by default and English by choice or `Accept-Language`, no script, nothing from
elsewhere, a strict CSP, not framable, usable on a phone).

Each page calls the service functions the API calls, as the signed-in user's principal (an admin, or its
reseller): the same rules, ownership checks, events and webhooks. Sign-in, sessions and users are
`service.users`; every action taken here is written to the audit log (`service.audit`), in the action's own
transaction: a page hands the service function it calls the entry to write (`View.pending`).

Forms: every one carries a hidden `csrf_token`. Signed in, it is the session's own token; before (the sign-in
and setup forms) it is the value of a cookie set with the form (double submit). Either way a post from another
site is also refused by `Sec-Fetch-Site` (else `Origin` against `Host`), as `/activate` refuses one.
"""

import csv
import functools
import hmac
import io
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import quote as url_quote
from uuid import UUID

from babel.dates import format_datetime
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from service import (
    audit,
    errors,
    idempotency,
    installations,
    keys,
    ledger,
    resellers,
    rules,
    signing_keys,
    totp,
    users,
    webhooks,
)
from service.audit import Actor
from service.auth import Role
from service.driver import Driver
from service.errors import N_
from service.http.deps import Runtime, client_address, runtime_of
from service.http.observability import KEYS_ISSUED, KEYS_REVOKED, event
from service.http.pages import ASSETS, SECURITY_HEADERS, check_code, environment, same_site
from service.http.routes.users import setup_url
from service.http.schemas.common import SaneDate
from service.i18n import LANGUAGES, negotiate, translate
from service.ratelimit import Limiter
from service.users import SessionTimes, SignedIn

PREFIX = "/cabinet"
SESSION_COOKIE = "timex_cabinet"
CSRF_COOKIE = "timex_cabinet_csrf"
LANGUAGE_COOKIE = "timex_cabinet_lang"
RENEWALS_DAYS = 60
"""Renewals lists the installations whose support ends within this many days, and every lapsed one."""
MAX_KEYS_AT_ONCE = 100
LIST_LIMIT = 100
_FORM_LIMITS = {"max_files": 0, "max_fields": 16}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_DATE = TypeAdapter(SaneDate)
R = TypeVar("R")

CROSS_SITE = N_("This form can only be sent from its own page: reload the page and send it again.")
PASSWORDS_DIFFER = N_("The two passwords differ.")
NOT_FOUND = N_("There is nothing at this address.")
BAD_DATE = N_("Enter a date as YYYY-MM-DD.")
BAD_COUNT = N_("Enter a whole number from 1 to %(count)d.")
NAME_REQUIRED = N_("Enter a name.")
ONE_ORIGIN = N_("Give the purchase date of a new sale, or the support end of an existing customer.")


@dataclass(frozen=True)
class Cabinet:
    """What the cabinet is built with, once per app."""

    limiter: Limiter
    times: SessionTimes
    pages: AESGCM
    """Seals what a page carries to its next post (an issued batch of keys for its CSV, a TOTP secret being set
    up), readable by that session only."""
    totp_secrets: totp.SecretBox


def cabinet_of(request: Request) -> Cabinet:
    return request.app.state.cabinet


def _environments() -> dict[str, Any]:
    made = {}
    for language in LANGUAGES:
        made[language] = environment(language)
        made[language].filters["instant"] = functools.partial(_instant, language=language)
    return made


def _instant(value: datetime, zone: Any, language: str) -> str:
    return format_datetime(value, "medium", tzinfo=zone, locale=language)


_ENVIRONMENTS = _environments()


def _language(request: Request) -> str:
    """`?lang=` (and it is remembered), else the one remembered, else `Accept-Language`, else `PAGE_LANGUAGE`."""
    for chosen in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if chosen in LANGUAGES:
            return chosen
    return negotiate(request.headers.get("accept-language"), runtime_of(request).settings.page_language)


def _secure(request: Request) -> bool:
    """Cookies are `Secure` except on plain http to this machine (the quick start)."""
    return not (request.url.scheme == "http" and request.url.hostname in _LOCAL_HOSTS)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="lax", secure=_secure(request)
    )


@dataclass
class View:
    """One request to a cabinet page: who asks, in which language, and what it posted."""

    request: Request
    language: str
    signed_in: SignedIn | None = None
    fields: dict[str, str] = field(default_factory=dict)
    csrf_token: str = ""

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.request)

    @property
    def user(self) -> users.UserRecord:
        assert self.signed_in is not None, "a page behind sign-in"
        return self.signed_in.user

    @property
    def actor(self) -> Actor:
        assert self.signed_in is not None, "a page behind sign-in"
        return self.signed_in.actor(client_address(self.request))

    def t(self, message: str, **params: object) -> str:
        return translate(self.language, message, params or None)

    def render(
        self, template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> Response:
        runtime = self.runtime
        other = next(other for other in LANGUAGES if other != self.language)
        html = (
            _ENVIRONMENTS[self.language]
            .get_template(f"cabinet/{template}")
            .render(
                language=self.language,
                other=other,
                assets=ASSETS,
                currency=runtime.settings.currency,
                zone=runtime.settings.zone,
                today=runtime.clock.today(),
                user=self.signed_in.user if self.signed_in else None,
                csrf_token=self.signed_in.csrf_token if self.signed_in else self.csrf_token,
                path=self.request.url.path,
                **context,
            )
        )
        response = HTMLResponse(
            html,
            status_code=status,
            headers={**SECURITY_HEADERS, "Content-Language": self.language, **(headers or {})},
        )
        if self.request.query_params.get("lang") in LANGUAGES:
            _cookie(response, self.request, LANGUAGE_COOKIE, self.language, max_age=365 * 24 * 3600)
        return response

    def refusal(self, refusal: errors.DomainError, template: str = "problem.html", **context: Any) -> Response:
        """A page saying why the service refused, with the problem's status (and `Retry-After`)."""
        headers = {"Retry-After": str(refusal.retry_after)} if isinstance(refusal, errors.RateLimited) else None
        return self.render(
            template,
            refusal.status,
            headers,
            refusal_title=self.t(refusal.title),
            refusal_detail=self.t(refusal.message, **refusal.params),
            **context,
        )

    def redirect(self, path: str) -> Response:
        return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)

    def pending(self, action: str, about: Callable[[R], audit.About]) -> audit.Pending[R]:
        """The audit entry of an action, for the service function that takes it to write in its transaction."""
        return audit.Pending(self.actor, action, self.runtime.clock.now(), about)

    async def audit(self, action: str, **what: Any) -> None:
        """The audit entry of what writes nothing else (a page read, a download), in a transaction of its own."""
        await audit.record_alone(
            driver=self.runtime.driver, actor=self.actor, action=action, now=self.runtime.clock.now(), **what
        )


Handler = Callable[[View], Awaitable[Response]]


async def _form(request: Request) -> dict[str, str]:
    async with request.form(**_FORM_LIMITS) as data:
        return {name: value for name, value in data.items() if isinstance(value, str)}


async def _current(request: Request) -> SignedIn | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 100:
        return None
    runtime = runtime_of(request)
    return await users.current(
        driver=runtime.driver, token=token, now=runtime.clock.now(), times=cabinet_of(request).times
    )


def page(
    *, staff: bool = False, enrolling: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A page behind sign-in (`staff`: admins only). A post must carry the session's CSRF token and come from
    this site. A refusal of the service is shown as a page with the problem's status. With
    `CABINET_ADMIN_TOTP`, an admin without two-step sign-in sees only the page that sets it up (`enrolling`)."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            view = View(request, _language(request))
            view.signed_in = await _current(request)
            if view.signed_in is None:
                response = view.redirect(f"{PREFIX}/login")
                response.delete_cookie(SESSION_COOKIE, path=PREFIX)
                return response
            if request.method == "POST":
                view.fields = await _form(request)
                sent = view.fields.get("csrf_token", "")
                if not same_site(request) or not hmac.compare_digest(sent.encode(), view.signed_in.csrf_token.encode()):
                    return view.render("problem.html", 403, refusal_title=view.t(CROSS_SITE))
            settings = runtime_of(request).settings
            if (
                settings.cabinet_admin_totp
                and view.user.role == "admin"
                and not view.user.totp_enabled
                and not enrolling
            ):
                return view.redirect(f"{PREFIX}/totp")
            if staff and view.user.role != "admin":
                return view.refusal(errors.Forbidden(N_("This page is for Smartec's staff")))
            try:
                return await handler(view)
            except errors.DomainError as refusal:
                return view.refusal(refusal)

        endpoint.__name__ = handler.__name__  # not `functools.wraps`: FastAPI would read the handler's signature
        return endpoint

    return wrap


# --- Signing in, setting a password, signing out


def _pre_session_view(request: Request) -> View:
    view = View(request, _language(request))
    view.csrf_token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    return view


def _with_csrf_cookie(view: View, response: Response) -> Response:
    _cookie(response, view.request, CSRF_COOKIE, view.csrf_token)
    return response


async def _pre_session_post(request: Request) -> tuple[View, Response | None]:
    """A sign-in or setup form posted: its fields, or the page refusing it (not from this site, or its token
    not the cookie's)."""
    view = _pre_session_view(request)
    view.fields = await _form(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = view.fields.get("csrf_token", "")
    if not same_site(request) or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        view.csrf_token = secrets.token_urlsafe(32)
        return view, view.render("problem.html", 403, refusal_title=view.t(CROSS_SITE))
    return view, None


async def login_page(request: Request) -> Response:
    if await _current(request) is not None:
        return RedirectResponse(f"{PREFIX}/", status_code=303, headers=SECURITY_HEADERS)
    view = _pre_session_view(request)
    return _with_csrf_cookie(view, view.render("login.html", password_set=request.query_params.get("done") == "setup"))


async def login_submit(request: Request) -> Response:
    view, refused = await _pre_session_post(request)
    if refused is not None:
        return _with_csrf_cookie(view, refused)
    runtime, cabinet = runtime_of(request), cabinet_of(request)
    username = view.fields.get("username", "")
    try:
        signed_in = await users.sign_in(
            driver=runtime.driver,
            limiter=cabinet.limiter,
            checks=runtime.secret_checks,
            address=client_address(request),
            username=username,
            password=view.fields.get("password", ""),
            code=view.fields.get("totp", ""),
            box=cabinet.totp_secrets,
            now=runtime.clock.now(),
            times=cabinet.times,
        )
    except errors.DomainError as refusal:
        return _with_csrf_cookie(view, view.refusal(refusal, "login.html", username=username[:64]))
    response = view.redirect(f"{PREFIX}/")
    _cookie(response, request, SESSION_COOKIE, signed_in.token)
    response.delete_cookie(CSRF_COOKIE, path=PREFIX)
    return response


async def setup_page(request: Request) -> Response:
    view = _pre_session_view(request)
    runtime = runtime_of(request)
    try:
        invited = await users.invited(
            driver=runtime.driver, token=request.path_params["token"], now=runtime.clock.now()
        )
    except errors.SetupLinkInvalid as refusal:
        return view.refusal(refusal)
    return _with_csrf_cookie(view, view.render("setup.html", invited=invited))


async def setup_submit(request: Request) -> Response:
    view, refused = await _pre_session_post(request)
    if refused is not None:
        return _with_csrf_cookie(view, refused)
    runtime = runtime_of(request)
    token = request.path_params["token"]
    password = view.fields.get("password", "")
    try:
        invited = await users.invited(driver=runtime.driver, token=token, now=runtime.clock.now())
        if password != view.fields.get("password_confirmation", ""):
            return _with_csrf_cookie(
                view, view.render("setup.html", 422, invited=invited, error=view.t(PASSWORDS_DIFFER))
            )
        await users.set_password(
            driver=runtime.driver,
            token=token,
            password=password,
            address=client_address(request),
            now=runtime.clock.now(),
        )
    except errors.SetupLinkInvalid as refusal:
        return view.refusal(refusal)
    except errors.InvalidRequest as refusal:
        error = view.t(refusal.message, **refusal.params)
        return _with_csrf_cookie(view, view.render("setup.html", 422, invited=invited, error=error))
    return view.redirect(f"{PREFIX}/login?done=setup")


@page(enrolling=True)
async def logout(view: View) -> Response:
    assert view.signed_in is not None
    runtime = view.runtime
    await users.sign_out(
        driver=runtime.driver, signed_in=view.signed_in, address=client_address(view.request), now=runtime.clock.now()
    )
    response = view.redirect(f"{PREFIX}/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# --- Two-step sign-in (TOTP)


TOTP_ISSUER = "Timex Support"


@page(enrolling=True)
async def totp_page(view: View) -> Response:
    if view.user.totp_enabled:
        return view.render("totp.html", enabled=True)
    return _totp_form(view, totp.new_secret())


def _totp_form(view: View, secret: bytes, status: int = 200, error: str | None = None) -> Response:
    return view.render(
        "totp.html",
        status,
        secret_text=totp.text_of(secret),
        link=totp.provisioning_uri(secret, view.user.username, TOTP_ISSUER),
        sealed=_seal(view, secret),
        required=view.runtime.settings.cabinet_admin_totp and view.user.role == "admin",
        error=error,
    )


@page(enrolling=True)
async def totp_submit(view: View) -> Response:
    secret = _unseal(view, view.fields.get("sealed", ""))
    if secret is None:
        return view.render("problem.html", 400, refusal_title=view.t(NOT_FOUND))
    runtime = view.runtime
    try:
        await users.enroll_totp(
            driver=runtime.driver,
            box=cabinet_of(view.request).totp_secrets,
            actor=view.actor,
            user_id=view.user.id,
            secret=secret,
            code=view.fields.get("code", ""),
            now=runtime.clock.now(),
        )
    except errors.InvalidRequest as refusal:
        return _totp_form(view, secret, 422, view.t(refusal.message, **refusal.params))
    return view.redirect(f"{PREFIX}/totp")


# --- Renewals, quotes, installations


@page()
async def renewals(view: View) -> Response:
    runtime = view.runtime
    today = runtime.clock.today()
    lists = {}
    for state in ("expiring", "lapsed"):
        lists[state] = await installations.pipeline(
            driver=runtime.driver,
            principal=view.user.principal,
            today=today,
            unit_price_minor=runtime.settings.unit_price_minor,
            state=state,
            expiring_within_days=RENEWALS_DAYS,
            limit=LIST_LIMIT,
        )
    return view.render(
        "renewals.html",
        names=await _reseller_names(view),
        expiring=lists["expiring"],
        lapsed=lists["lapsed"],
        days=RENEWALS_DAYS,
        bonus_lost_on=rules.bonus_lost_on,
        bonus_months=rules.EARLY_RENEWAL_BONUS_MONTHS,
    )


def _code(view: View) -> str:
    code, _ = check_code(view.request.path_params["code"], view.language)
    if code is None:
        raise errors.InstallationNotFound(
            N_("No installation has the code %(code)s"), code=view.request.path_params["code"][:64]
        )
    return code


def _day(view: View, text: str | None) -> tuple[date, str | None]:
    """The day asked for (`?on=`), or today; and what is wrong with what was typed."""
    today = view.runtime.clock.today()
    if not text:
        return today, None
    try:
        return _DATE.validate_python(text), None
    except ValidationError:
        return today, view.t(BAD_DATE)


async def _installation(view: View, on: date) -> dict[str, Any]:
    runtime = view.runtime
    record, ledger = await installations.details(driver=runtime.driver, principal=view.user.principal, code=_code(view))
    today = runtime.clock.today()
    quote = await installations.quote(
        driver=runtime.driver, code=record.code, on=on, unit_price_minor=runtime.settings.unit_price_minor
    )
    reseller = None
    if record.reseller_id is not None:
        reseller = await resellers.get(driver=runtime.driver, reseller_id=record.reseller_id)
    return {
        "record": record,
        "ledger": ledger,
        "state": installations.SupportState(record.code, record.support, record.bonus_months, today),
        "quote": quote,
        "on": on,
        "reseller": reseller,
        "bonus_lost_on": rules.bonus_lost_on(record.support),
    }


@page()
async def quote_page(view: View) -> Response:
    on, error = _day(view, view.request.query_params.get("on"))
    context = await _installation(view, on)
    await view.audit(
        "quote.opened",
        target=context["record"].code,
        reseller_id=context["record"].reseller_id,
        details={"on": on.isoformat()},
    )
    return view.render("quote.html", date_error=error, **context)


@page()
async def installation_page(view: View) -> Response:
    on, error = _day(view, view.request.query_params.get("on"))
    return view.render("installation.html", date_error=error, **await _installation(view, on))


@page()
async def installations_page(view: View) -> Response:
    runtime = view.runtime
    typed = view.request.query_params.get("code", "").strip()[:64]
    prefix, error = check_code(typed, view.language) if typed else (None, None)
    found = None
    if error is None:
        found = await installations.pipeline(
            driver=runtime.driver,
            principal=view.user.principal,
            today=runtime.clock.today(),
            unit_price_minor=runtime.settings.unit_price_minor,
            code_prefix=prefix,
            cursor=_cursor(view),
            expiring_within_days=RENEWALS_DAYS,
            limit=LIST_LIMIT,
        )
    return view.render("installations.html", typed=typed, error=error, found=found, names=await _reseller_names(view))


# --- Registering a sale


async def _reseller_names(view: View) -> dict[UUID, str]:
    """Staff see every reseller's installations: by the reseller's name."""
    return {reseller.id: reseller.name for reseller in await _reseller_choices(view)}


async def _reseller_choices(view: View) -> list[resellers.ResellerRecord]:
    if view.user.role != "admin":
        return []
    return await resellers.list_all(driver=view.runtime.driver)


@page()
async def sale_page(view: View) -> Response:
    return view.render("sale.html", form={}, errors={}, choices=await _reseller_choices(view))


@page()
async def sale_submit(view: View) -> Response:
    runtime = view.runtime
    form = {name: view.fields.get(name, "").strip() for name in ("code", "purchased_on", "support_end", "reseller_id")}
    found: dict[str, str] = {}
    code, code_error = check_code(form["code"], view.language)
    if code_error:
        found["code"] = code_error
    days: dict[str, date | None] = {}
    for name in ("purchased_on", "support_end"):
        days[name], error = _day(view, form[name]) if form[name] else (None, None)
        if error:
            found[name] = error
    if (days["purchased_on"] is None) == (days["support_end"] is None) and "purchased_on" not in found:
        found["purchased_on"] = view.t(ONE_ORIGIN)
    reseller_id = _uuid(form["reseller_id"]) if view.user.role == "admin" else None
    if found:
        return view.render("sale.html", 422, form=form, errors=found, choices=await _reseller_choices(view))
    assert code is not None
    now, today = runtime.clock.read()
    try:
        record = await installations.register(
            driver=runtime.driver,
            principal=view.user.principal,
            code=code,
            today=today,
            now=now,
            purchased_on=days["purchased_on"],
            support_end=days["support_end"],
            reseller_id=reseller_id,
            purchase_max_age_days=runtime.settings.purchase_max_age_days,
            audit=view.pending(
                "installation.registered",
                lambda registered: audit.About(
                    registered.code,
                    registered.reseller_id,
                    {"purchased_on": days["purchased_on"], "support_end": days["support_end"]},
                ),
            ),
        )
    except errors.DomainError as refusal:
        return view.refusal(refusal, "sale.html", form=form, errors={}, choices=await _reseller_choices(view))
    return view.redirect(f"{PREFIX}/installations/{url_quote(record.code)}")


def _cursor(view: View) -> str | None:
    """Where a list's page starts (`?cursor=`, the previous page's `next_cursor`), or its first page."""
    return view.request.query_params.get("cursor", "")[:200] or None


def _path_id(view: View, name: str, missing: type[errors.DomainError]) -> UUID:
    """The id in the path, or `missing` (not found) for one that is not an id."""
    found = _uuid(view.request.path_params[name])
    if found is None:
        raise missing()
    return found


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


# --- Keys


async def _keys_page(view: View, status: int = 200, **context: Any) -> Response:
    page_of_keys = await keys.list_keys(
        driver=view.runtime.driver,
        principal=view.user.principal,
        cursor=_cursor(view),
        limit=LIST_LIMIT,
    )
    return view.render(
        "keys.html",
        status,
        keys=page_of_keys.items,
        next_cursor=page_of_keys.next_cursor,
        choices=await _reseller_choices(view),
        limit=MAX_KEYS_AT_ONCE,
        form_id=secrets.token_urlsafe(16),
        **context,
    )


@page()
async def keys_page(view: View) -> Response:
    return await _keys_page(view)


@page()
async def keys_issue(view: View) -> Response:
    """The form carries an id of its own: posted again (a reload, a double click), it answers the keys it issued
    the first time, stored as the API stores an `Idempotency-Key`'s answer (sealed, for `IDEMPOTENCY_TTL_HOURS`)."""
    text = view.fields.get("count", "").strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_KEYS_AT_ONCE):
        return await _keys_page(view, 422, count_error=view.t(BAD_COUNT, count=MAX_KEYS_AT_ONCE), count=text[:10])
    runtime = view.runtime
    owner = view.user.reseller_id if view.user.role != "admin" else _uuid(view.fields.get("reseller_id", ""))
    attempt = idempotency.attempt(
        scope=f"cabinet:{view.user.id}",
        key=f"keys:{view.fields.get('form_id', '')[:64] or secrets.token_urlsafe(16)}",
        method="POST",
        target=f"{PREFIX}/keys",
        body=f"{int(text)}:{owner}".encode(),
    )
    claimed = await idempotency.claim(
        driver=runtime.driver,
        attempt=attempt,
        now=runtime.clock.now(),
        ttl=timedelta(hours=runtime.settings.idempotency_ttl_hours),
        sealer=runtime.sealer,
    )
    if isinstance(claimed, idempotency.Answer):
        return HTMLResponse(
            claimed.body, claimed.status, headers={**SECURITY_HEADERS, "Content-Language": view.language}
        )
    try:
        issued = await keys.issue(
            driver=runtime.driver,
            count=int(text),
            secret=runtime.key_secret,
            reseller_id=owner,
            audit=view.pending(
                "keys.issued", lambda batch: audit.About(str(batch[0].id), owner, {"count": len(batch)})
            ),
        )
    except Exception:
        await idempotency.release(driver=runtime.driver, claim=claimed)
        raise
    KEYS_ISSUED.inc(len(issued))
    event("keys_issued", count=len(issued), reseller_id=owner, first_key_id=issued[0].id)
    batch = _seal(view, json.dumps([(str(k.id), k.key, k.prefix) for k in issued]).encode())
    response = view.render("keys_issued.html", 201, issued=issued, batch=batch)
    answer = idempotency.Answer(response.status_code, "text/html; charset=utf-8", bytes(response.body))
    await idempotency.store(driver=runtime.driver, claim=claimed, answer=answer, sealer=runtime.sealer)
    return response


def _seal(view: View, data: bytes) -> str:
    """`data` for the page to carry to its next post, readable by this session only."""
    assert view.signed_in is not None
    nonce = secrets.token_bytes(12)
    sealed = cabinet_of(view.request).pages.encrypt(nonce, data, users.digest(view.signed_in.token))
    return (nonce + sealed).hex()


def _unseal(view: View, text: str) -> bytes | None:
    assert view.signed_in is not None
    try:
        sealed = bytes.fromhex(text)
        return cabinet_of(view.request).pages.decrypt(sealed[:12], sealed[12:], users.digest(view.signed_in.token))
    except (ValueError, InvalidTag):
        return None


@page()
async def keys_csv(view: View) -> Response:
    """The batch just issued, as CSV: sealed into its page, readable by this session only."""
    sealed = _unseal(view, view.fields.get("batch", ""))
    if sealed is None:
        return view.render("problem.html", 400, refusal_title=view.t(NOT_FOUND))
    rows = json.loads(sealed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["key_id", "key", "prefix"])
    writer.writerows(rows)
    today = view.runtime.clock.today()
    await view.audit("keys.downloaded", target=rows[0][0] if rows else None, details={"count": len(rows)})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="timex-keys-{today.isoformat()}.csv"',
        },
    )


@page()
async def key_revoke(view: View) -> Response:
    key_id = _path_id(view, "key_id", errors.KeyNotFound)
    runtime = view.runtime
    found = await keys.info(driver=runtime.driver, key_id=key_id)
    view.user.principal.require_owner(found.reseller_id)
    await keys.revoke(
        driver=runtime.driver,
        key_id=key_id,
        now=runtime.clock.now(),
        audit=view.pending("key.revoked", lambda key: audit.About(key.prefix, key.reseller_id, {"key_id": key.id})),
    )
    KEYS_REVOKED.inc()
    event("key_revoked", key_id=key_id)
    return view.redirect(f"{PREFIX}/keys")


# --- Webhooks: endpoints, their deliveries, redelivery, the secret


async def _webhooks_page(view: View, status: int = 200, **context: Any) -> Response:
    endpoints = await webhooks.list_endpoints(
        driver=view.runtime.driver,
        principal=view.user.principal,
        cursor=_cursor(view),
        limit=LIST_LIMIT,
    )
    return view.render(
        "webhooks.html",
        status,
        endpoints=endpoints.items,
        next_cursor=endpoints.next_cursor,
        event_types=webhooks.EVENT_TYPES,
        **context,
    )


@page()
async def webhooks_page(view: View) -> Response:
    return await _webhooks_page(view, form={})


@page()
async def webhook_create(view: View) -> Response:
    runtime = view.runtime
    url = view.fields.get("url", "").strip()[:2000]
    chosen = [kind for kind in webhooks.EVENT_TYPES if view.fields.get(f"type:{kind}")]
    try:
        created = await webhooks.create_endpoint(
            driver=runtime.driver,
            principal=view.user.principal,
            url=url,
            event_types=chosen or None,
            reseller_id=None,
            allowed_hosts=runtime.webhook_allowed_hosts,
            audit=view.pending("webhook_endpoint.created", lambda made: _about_endpoint(made.endpoint)),
        )
    except errors.InvalidRequest as refusal:
        return await _webhooks_page(view, 400, form={"url": url}, url_error=view.t(refusal.message, **refusal.params))
    return view.render("webhook_secret.html", 201, endpoint=created.endpoint, secret=created.secret)


def _about_endpoint(endpoint: webhooks.Endpoint) -> audit.About:
    return audit.About(endpoint.url[:200], endpoint.reseller_id)


@page()
async def webhook_page(view: View) -> Response:
    driver, principal, endpoint_id = (
        view.runtime.driver,
        view.user.principal,
        _path_id(view, "endpoint_id", errors.WebhookEndpointNotFound),
    )
    endpoint = await webhooks.get_endpoint(driver=driver, principal=principal, endpoint_id=endpoint_id)
    deliveries = await webhooks.list_deliveries(
        driver=driver, principal=principal, endpoint_id=endpoint_id, limit=LIST_LIMIT
    )
    return view.render("webhook.html", endpoint=endpoint, deliveries=deliveries.items)


@page()
async def webhook_redeliver(view: View) -> Response:
    endpoint_id = _path_id(view, "endpoint_id", errors.WebhookEndpointNotFound)
    delivery_id = _path_id(view, "delivery_id", errors.WebhookDeliveryNotFound)
    runtime = view.runtime
    await webhooks.redeliver(
        driver=runtime.driver,
        principal=view.user.principal,
        endpoint_id=endpoint_id,
        delivery_id=delivery_id,
        now=runtime.clock.now(),
        audit=view.pending(
            "webhook_delivery.redelivered",
            lambda delivery: audit.About(str(delivery.id), details={"endpoint_id": endpoint_id}),
        ),
    )
    return view.redirect(f"{PREFIX}/webhooks/{endpoint_id}")


@page()
async def webhook_rotate(view: View) -> Response:
    rotated = await webhooks.rotate_secret(
        driver=view.runtime.driver,
        principal=view.user.principal,
        endpoint_id=_path_id(view, "endpoint_id", errors.WebhookEndpointNotFound),
        audit=view.pending("webhook_endpoint.secret_rotated", lambda made: _about_endpoint(made.endpoint)),
    )
    return view.render("webhook_secret.html", endpoint=rotated.endpoint, secret=rotated.secret, rotated=True)


@page()
async def webhook_disable(view: View) -> Response:
    runtime = view.runtime
    endpoint = await webhooks.disable_endpoint(
        driver=runtime.driver,
        principal=view.user.principal,
        endpoint_id=_path_id(view, "endpoint_id", errors.WebhookEndpointNotFound),
        now=runtime.clock.now(),
        audit=view.pending("webhook_endpoint.disabled", _about_endpoint),
    )
    return view.redirect(f"{PREFIX}/webhooks/{endpoint.id}")


# --- Staff: failed deliveries across resellers


@page(staff=True)
async def failed_deliveries_page(view: View) -> Response:
    driver = view.runtime.driver
    failed = await webhooks.failed_deliveries(driver=driver, limit=LIST_LIMIT)
    names = {reseller.id: reseller.name for reseller in await resellers.list_all(driver=driver)}
    return view.render("deliveries.html", failed=failed, names=names)


# --- Staff: the signing keys, and a rotation prepared here and certified where the root's private key is


CERTIFICATE_REQUIRED = N_("Paste the certificate that certify-signing-key wrote (PEM).")
CERTIFICATE_LIMIT = 10_000
"""Characters: a signing key's certificate in PEM is about 900."""


async def _signing_keys_page(view: View, status: int = 200, **context: Any) -> Response:
    """The published keys, as this process holds them, and the rotation prepared, if one is."""
    runtime = view.runtime
    key_set = await runtime.signing_keys.current()
    return view.render(
        "signing_keys.html",
        status,
        keys=key_set.keys,
        from_setting=runtime.signing_keys.given,
        pending=None if runtime.signing_keys.given else await signing_keys.pending(driver=runtime.driver),
        certificate_limit=CERTIFICATE_LIMIT,
        reload_seconds=runtime.settings.signing_keys_reload_seconds,
        **context,
    )


@page(staff=True)
async def signing_keys_page(view: View) -> Response:
    return await _signing_keys_page(view)


def _require_stored_keys(view: View) -> None:
    if view.runtime.signing_keys.given:
        raise errors.SigningKeyGiven()


@page(staff=True)
async def signing_key_prepare(view: View) -> Response:
    """A new key and the request for its certificate, which the root's holder certifies offline: the root's private
    key never comes here."""
    _require_stored_keys(view)
    runtime = view.runtime
    await signing_keys.prepare(
        driver=runtime.driver,
        secret=runtime.settings.certificate_key_secret,
        now=runtime.clock.now(),
        audit=view.pending("signing_key.prepared", lambda key: audit.About(key.kid)),
    )
    return view.redirect(f"{PREFIX}/signing-keys")


@page(staff=True)
async def signing_key_request(view: View) -> Response:
    """The prepared key's certificate signing request, as a file to carry to the root's machine."""
    pending = await signing_keys.pending(driver=view.runtime.driver)
    if pending is None:
        raise errors.SigningKeyNotPrepared()
    return Response(
        pending.request_pem,
        media_type="application/pkcs10",
        headers={**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="signing-key.csr"'},
    )


@page(staff=True)
async def signing_key_publish(view: View) -> Response:
    """The prepared key published with its certificate by the root, as `rotate-signing-key` publishes a key."""
    _require_stored_keys(view)
    runtime = view.runtime
    kid = view.fields.get("kid", "")[:64]
    certificate = view.fields.get("certificate", "").strip()
    immediately = bool(view.fields.get("now"))
    if not certificate or len(certificate) > CERTIFICATE_LIMIT:
        return await _signing_keys_page(
            view,
            422,
            certificate=certificate[:CERTIFICATE_LIMIT],
            certificate_error=view.t(CERTIFICATE_REQUIRED),
        )
    try:
        rotation = await signing_keys.publish_prepared(
            driver=runtime.driver,
            secret=runtime.settings.certificate_key_secret,
            root=runtime.signing_keys.root(),
            timing=signing_keys.Timing.of(runtime.settings),
            clock=runtime.clock,
            kid=kid,
            certificate=certificate,
            immediately=immediately,
            audit=view.pending(
                "signing_key.published", lambda published: audit.About(published, details={"emergency": immediately})
            ),
        )
    except (errors.SigningKeyCertificateRefused, errors.RotationUnderWay) as refusal:
        return await _signing_keys_page(
            view,
            refusal.status,
            certificate=certificate,
            certificate_error=view.t(refusal.message, **refusal.params),
        )
    return await _signing_keys_page(view, published=rotation, emergency=immediately)


@page(staff=True)
async def signing_key_discard(view: View) -> Response:
    await signing_keys.discard(
        driver=view.runtime.driver,
        kid=view.fields.get("kid", "")[:64],
        audit=view.pending("signing_key.discarded", audit.About),
    )
    return view.redirect(f"{PREFIX}/signing-keys")


# --- Staff: voids, with what a cascade would void shown before it is confirmed


REASON_REQUIRED = N_("Say why it is voided (at most 500 characters).")
LEDGER_CHANGED = N_("The ledger changed since this page was shown: check what would be voided now.")


async def _void_preview(view: View) -> dict[str, Any]:
    """The activation to void, and the later live activations a void takes with it (each was computed on it)."""
    activation_id = _uuid(view.request.path_params["activation_id"])
    record, entries = await installations.details(
        driver=view.runtime.driver, principal=view.user.principal, code=_code(view)
    )
    live = [entry for entry in entries if entry.voided_at is None]
    chosen = next((entry for entry in live if entry.id == activation_id), None)
    if chosen is None:
        raise errors.ActivationNotFound()
    return {"record": record, "chosen": chosen, "dependents": live[live.index(chosen) + 1 :]}


@page(staff=True)
async def void_page(view: View) -> Response:
    return view.render("void.html", **await _void_preview(view), reason="")


@page(staff=True)
async def void_submit(view: View) -> Response:
    preview = await _void_preview(view)
    reason = view.fields.get("reason", "").strip()
    shown = [_uuid(text) for text in view.fields.get("dependents", "").split(",") if text]
    if not reason or len(reason) > 500 or not reason.isprintable():
        return view.render("void.html", 422, **preview, reason=reason[:500], reason_error=view.t(REASON_REQUIRED))
    runtime = view.runtime
    try:
        result = await ledger.void(
            driver=runtime.driver,
            activation_id=preview["chosen"].id,
            reason=reason,
            now=runtime.clock.now(),
            cascade=bool(shown),
            previewed=[activation for activation in shown if activation is not None],
            audit=view.pending(
                "activation.voided",
                lambda done: audit.About(
                    done.installation,
                    preview["record"].reseller_id,
                    {"voided": [str(each) for each in done.voided], "reason": reason},
                ),
            ),
        )
    except errors.VoidHasDependents:
        return view.render("void.html", 409, **await _void_preview(view), reason=reason, changed=view.t(LEDGER_CHANGED))
    for voided in result.voided:
        event("void", activation_id=voided, installation=result.installation, support_end=result.support_end)
    return view.redirect(f"{PREFIX}/installations/{url_quote(result.installation)}")


# --- Staff: resellers, users, the audit log


@page(staff=True)
async def resellers_page(view: View) -> Response:
    return view.render("resellers.html", resellers=await resellers.list_all(driver=view.runtime.driver), form={})


@page(staff=True)
async def reseller_create(view: View) -> Response:
    name = view.fields.get("name", "").strip()
    if not name or len(name) > 200 or not name.isprintable():
        return view.render(
            "resellers.html",
            422,
            resellers=await resellers.list_all(driver=view.runtime.driver),
            form={"name": name[:200]},
            name_error=view.t(NAME_REQUIRED),
        )
    new = await resellers.register(
        driver=view.runtime.driver,
        name=name,
        audit=view.pending("reseller.created", lambda created: audit.About(created.name, created.id)),
    )
    return view.render(
        "reseller_secret.html",
        201,
        reseller_id=new.id,
        name=new.name,
        client_id=new.client_id,
        client_secret=new.client_secret,
    )


@page(staff=True)
async def reseller_page(view: View) -> Response:
    driver = view.runtime.driver
    reseller = await resellers.get(driver=driver, reseller_id=_path_id(view, "reseller_id", errors.ResellerNotFound))
    return view.render(
        "reseller.html", reseller=reseller, people=await users.list_users(driver=driver, reseller_id=reseller.id)
    )


@page(staff=True)
async def reseller_disable(view: View) -> Response:
    runtime = view.runtime
    reseller = await resellers.disable(
        driver=runtime.driver,
        reseller_id=_path_id(view, "reseller_id", errors.ResellerNotFound),
        now=runtime.clock.now(),
        audit=view.pending("reseller.disabled", _about_reseller),
    )
    await users.end_reseller_sessions(driver=runtime.driver, reseller_id=reseller.id)
    event("reseller_disabled", reseller_id=reseller.id)
    return view.redirect(f"{PREFIX}/resellers/{reseller.id}")


@page(staff=True)
async def reseller_enable(view: View) -> Response:
    reseller = await resellers.enable(
        driver=view.runtime.driver,
        reseller_id=_path_id(view, "reseller_id", errors.ResellerNotFound),
        audit=view.pending("reseller.enabled", _about_reseller),
    )
    event("reseller_enabled", reseller_id=reseller.id)
    return view.redirect(f"{PREFIX}/resellers/{reseller.id}")


@page(staff=True)
async def reseller_rotate(view: View) -> Response:
    runtime = view.runtime
    rotated = await resellers.rotate_secret(
        driver=runtime.driver,
        reseller_id=_path_id(view, "reseller_id", errors.ResellerNotFound),
        now=runtime.clock.now(),
        audit=view.pending("reseller.secret_rotated", lambda rotated: _about_reseller(rotated.reseller)),
    )
    reseller = rotated.reseller
    event("reseller_secret_rotated", reseller_id=reseller.id)
    return view.render(
        "reseller_secret.html",
        reseller_id=reseller.id,
        name=reseller.name,
        client_id=reseller.client_id,
        client_secret=rotated.client_secret,
        rotated=True,
    )


def _about_reseller(reseller: resellers.ResellerRecord) -> audit.About:
    return audit.About(reseller.name, reseller.id)


async def _users_page(view: View, status: int = 200, **context: Any) -> Response:
    driver = view.runtime.driver
    everyone = await users.list_users(driver=driver)
    names = {reseller.id: reseller.name for reseller in await resellers.list_all(driver=driver)}
    return view.render("users.html", status, people=everyone, names=names, form=context.pop("form", {}), **context)


@page(staff=True)
async def users_page(view: View) -> Response:
    return await _users_page(view, form={"reseller_id": view.request.query_params.get("reseller_id", "")})


@page(staff=True)
async def user_invite(view: View) -> Response:
    runtime = view.runtime
    form = {name: view.fields.get(name, "").strip() for name in ("username", "role", "reseller_id")}
    role: Role = "admin" if form["role"] == "admin" else "reseller"
    try:
        invitation = await users.invite(
            driver=runtime.driver,
            actor=view.actor,
            username=form["username"],
            role=role,
            reseller_id=_uuid(form["reseller_id"]) if role == "reseller" else None,
            now=runtime.clock.now(),
            setup_lifetime=timedelta(hours=runtime.settings.cabinet_setup_hours),
        )
    except (errors.InvalidRequest, errors.UserExists, errors.ResellerNotFound) as refusal:
        return await _users_page(
            view, refusal.status, form=form, invite_error=view.t(refusal.message, **refusal.params)
        )
    link = setup_url(runtime.settings, str(view.request.base_url), invitation.setup_token)
    return view.render("user_invited.html", 201, invited=invitation.user, link=link)


@page(staff=True)
async def user_setup_link(view: View) -> Response:
    runtime = view.runtime
    invitation = await users.renew_setup_link(
        driver=runtime.driver,
        actor=view.actor,
        user_id=_path_id(view, "user_id", errors.UserNotFound),
        now=runtime.clock.now(),
        setup_lifetime=timedelta(hours=runtime.settings.cabinet_setup_hours),
    )
    link = setup_url(runtime.settings, str(view.request.base_url), invitation.setup_token)
    return view.render("user_invited.html", invited=invitation.user, link=link, renewed=True)


class _UserChange(Protocol):
    def __call__(
        self, *, driver: Driver, actor: Actor, user_id: UUID, now: datetime
    ) -> Awaitable[users.UserRecord]: ...


async def _change_user(view: View, change: _UserChange) -> Response:
    """A change to the user in the path (disable, enable, reset its two-step sign-in), then the Users page."""
    runtime = view.runtime
    await change(
        driver=runtime.driver,
        actor=view.actor,
        user_id=_path_id(view, "user_id", errors.UserNotFound),
        now=runtime.clock.now(),
    )
    return view.redirect(f"{PREFIX}/users")


@page(staff=True)
async def user_disable(view: View) -> Response:
    return await _change_user(view, users.disable)


@page(staff=True)
async def user_enable(view: View) -> Response:
    return await _change_user(view, users.enable)


@page(staff=True)
async def user_reset_totp(view: View) -> Response:
    return await _change_user(view, users.reset_totp)


@page(staff=True)
async def audit_page(view: View) -> Response:
    text = view.request.query_params.get("before", "")
    before = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
    found, has_more = await audit.entries(driver=view.runtime.driver, before=before, limit=LIST_LIMIT)
    return view.render("audit.html", entries=found, next_before=found[-1].id if has_more else None)


async def not_found(request: Request) -> Response:
    view = View(request, _language(request))
    return view.render("problem.html", 404, refusal_title=view.t(NOT_FOUND))


def install(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    app.state.cabinet = Cabinet(
        limiter=Limiter(
            runtime.counters,
            limit=settings.cabinet_login_failure_limit,
            window=settings.cabinet_login_failure_window_seconds,
            prefix=f"{settings.rate_limit_prefix}:cabinet-login",
        ),
        times=SessionTimes(
            idle=timedelta(minutes=settings.cabinet_session_idle_minutes),
            lifetime=timedelta(hours=settings.cabinet_session_hours),
        ),
        pages=AESGCM(HKDF(SHA256(), 32, salt=None, info=b"timex-licensing cabinet pages").derive(runtime.key_secret)),
        totp_secrets=totp.SecretBox(runtime.key_secret),
    )
    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/login", login_page, "GET"),
        ("/login", login_submit, "POST"),
        ("/setup/{token}", setup_page, "GET"),
        ("/setup/{token}", setup_submit, "POST"),
        ("/logout", logout, "POST"),
        ("/totp", totp_page, "GET"),
        ("/totp", totp_submit, "POST"),
        ("/", renewals, "GET"),
        ("/quote/{code}", quote_page, "GET"),
        ("/installations", installations_page, "GET"),
        ("/installations/{code}", installation_page, "GET"),
        ("/installations/{code}/void/{activation_id}", void_page, "GET"),
        ("/installations/{code}/void/{activation_id}", void_submit, "POST"),
        ("/sales", sale_page, "GET"),
        ("/sales", sale_submit, "POST"),
        ("/keys", keys_page, "GET"),
        ("/keys", keys_issue, "POST"),
        ("/keys/csv", keys_csv, "POST"),
        ("/keys/{key_id}/revoke", key_revoke, "POST"),
        ("/webhooks", webhooks_page, "GET"),
        ("/webhooks", webhook_create, "POST"),
        ("/webhooks/{endpoint_id}", webhook_page, "GET"),
        ("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", webhook_redeliver, "POST"),
        ("/webhooks/{endpoint_id}/rotate-secret", webhook_rotate, "POST"),
        ("/webhooks/{endpoint_id}/disable", webhook_disable, "POST"),
        ("/deliveries", failed_deliveries_page, "GET"),
        ("/signing-keys", signing_keys_page, "GET"),
        ("/signing-keys/prepare", signing_key_prepare, "POST"),
        ("/signing-keys/request.csr", signing_key_request, "GET"),
        ("/signing-keys/publish", signing_key_publish, "POST"),
        ("/signing-keys/discard", signing_key_discard, "POST"),
        ("/resellers", resellers_page, "GET"),
        ("/resellers", reseller_create, "POST"),
        ("/resellers/{reseller_id}", reseller_page, "GET"),
        ("/resellers/{reseller_id}/disable", reseller_disable, "POST"),
        ("/resellers/{reseller_id}/enable", reseller_enable, "POST"),
        ("/resellers/{reseller_id}/rotate-secret", reseller_rotate, "POST"),
        ("/users", users_page, "GET"),
        ("/users", user_invite, "POST"),
        ("/users/{user_id}/setup-link", user_setup_link, "POST"),
        ("/users/{user_id}/disable", user_disable, "POST"),
        ("/users/{user_id}/enable", user_enable, "POST"),
        ("/users/{user_id}/reset-totp", user_reset_totp, "POST"),
        ("/audit", audit_page, "GET"),
        ("/{rest:path}", not_found, "GET"),
    ]
    for path, endpoint, method in routes:
        app.add_api_route(f"{PREFIX}{path}", endpoint, methods=[method], include_in_schema=False)
