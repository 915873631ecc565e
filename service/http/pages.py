"""The self-service pages, for a customer with a browser and a Timex server that cannot reach the service:
`/activate` (check an installation's support and what renewing costs, activate keys, download the certificate)
and `/support/{code}` (what Help → About shows, in words).

Server-rendered (Jinja2), in Russian by default and in English by choice (`PAGE_LANGUAGE`, `?lang=`), working
without JavaScript and with nothing from the internet. They call the service functions the API calls, through
the runtime's driver and clock; an activation is the API's (`routes.activations.activate_keys`): the same
per-client limits, metrics and events, a malformed or repeated key refused before it.

A page that changes something can be posted to from another site; there is no session or cookie to ride on
(the keys are the credential), but a page posting from every visitor's browser would spread a key guesser over
their addresses, past the per-client limit. So a cross-site post is refused (`Sec-Fetch-Site`, else `Origin`
against `Host`). Every page has a strict Content-Security-Policy (no script at all, styles from here) and
cannot be framed.
"""

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from pydantic import TypeAdapter, ValidationError

from service import errors, installations, keyformat, rules
from service.activations import MAX_KEYS
from service.errors import N_
from service.http import validation
from service.http.deps import runtime_of
from service.http.routes.activations import activate_keys
from service.http.schemas.common import InstallationCode
from service.i18n import LANGUAGES, long_date, money, negotiate, translate, translations
from service.installations import SupportState

HERE = Path(__file__).resolve().parent
ASSETS = "/page-assets"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A page names an installation's support and, once posted, its keys: nothing to keep in a cache.
    "Cache-Control": "no-store",
}
_CODE = TypeAdapter(InstallationCode)
_FORM_LIMITS = {"max_files": 0, "max_fields": 8}


def environment(language: str) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    environment.filters["long_date"] = lambda day: long_date(day, language)
    environment.filters["money"] = pass_context(lambda context, minor: money(minor, context["currency"], language))
    return environment


_ENVIRONMENTS = {language: environment(language) for language in LANGUAGES}

# Why a key was refused, by the refusal's code, for the person who typed it.
KEY_REFUSALS = {
    errors.KeyMalformed.code: N_("This is not a Timex Support key: check it for a typo."),
    errors.KeyDuplicated.code: N_("This key is entered twice."),
    errors.KeyNotFound.code: N_("No such key was issued: check it for a typo."),
    errors.KeyAlreadyUsed.code: N_("This key was already used."),
    errors.KeyRevoked.code: N_("This key was revoked and cannot be used."),
}
CODE_NOT_FOUND = N_("No installation has this code: check it in Timex, Help → About.")
NO_KEYS = N_("Enter at least one key.")
TOO_MANY_KEYS = N_("At most %(count)d keys at once.")
CROSS_SITE = N_("This form can only be sent from its own page.")


@dataclass
class KeyLine:
    text: str
    canonical: str | None = None
    refusal: str | None = None


@dataclass
class Form:
    code: str = ""
    keys_text: str = ""
    code_error: str | None = None
    keys_error: str | None = None
    keys: list[KeyLine] = field(default_factory=list)

    @property
    def good_keys(self) -> list[str]:
        return [key.canonical for key in self.keys if key.canonical is not None and key.refusal is None]

    @property
    def has_errors(self) -> bool:
        return bool(self.code_error or self.keys_error or any(key.refusal for key in self.keys))


def _language(value: object, request: Request) -> str:
    """The page's own choice (`?lang=`, carried by its links and forms) once made; until then the browser's
    `Accept-Language`, and `PAGE_LANGUAGE` for a browser that names neither language."""
    if isinstance(value, str) and value in LANGUAGES:
        return value
    return negotiate(request.headers.get("accept-language"), runtime_of(request).settings.page_language)


def _render(
    request: Request,
    template: str,
    language: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    currency = runtime_of(request).settings.currency
    other = next(other for other in LANGUAGES if other != language)
    html = (
        _ENVIRONMENTS[language]
        .get_template(template)
        .render(language=language, other=other, assets=ASSETS, currency=currency, **context)
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={**SECURITY_HEADERS, "Content-Language": language, "Vary": "Accept-Language", **(headers or {})},
    )


def check_code(text: str, language: str) -> tuple[str | None, str | None]:
    """The code folded as the API folds it, or what is wrong with it in words."""
    try:
        return _CODE.validate_python(text.strip()), None
    except ValidationError as invalid:
        return None, validation.problem_of(invalid.errors()[0], language)


def _check_keys(text: str, language: str) -> tuple[list[KeyLine], str | None]:
    """Each key typed, read offline as the API reads it: a typo or a repeat is found here, before any lookup."""
    lines = [KeyLine(raw) for raw in keyformat.split(text)]
    if len(lines) > MAX_KEYS:
        return lines, translate(language, TOO_MANY_KEYS, {"count": MAX_KEYS})
    seen: set[str] = set()
    for line in lines:
        try:
            line.canonical = keyformat.normalize(line.text)
        except errors.KeyMalformed:
            line.refusal = errors.KeyMalformed.code
            continue
        if line.canonical in seen:
            line.refusal = errors.KeyDuplicated.code
        seen.add(line.canonical)
    return lines, None


def same_site(request: Request) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def _support(request: Request, code: str) -> tuple[SupportState, rules.Quote]:
    """The support state and what renewing takes today, as the API's support and quote answer them."""
    runtime = runtime_of(request)
    today = runtime.clock.today()
    state = await installations.support_state(driver=runtime.driver, code=code, today=today)
    return state, await _quote(request, code, None)


async def _quote(request: Request, code: str, licenses: int | None) -> rules.Quote:
    runtime = runtime_of(request)
    return await installations.quote(
        driver=runtime.driver,
        code=code,
        on=runtime.clock.today(),
        unit_price_minor=runtime.settings.unit_price_minor,
        licenses=licenses,
    )


async def activate_page(request: Request) -> HTMLResponse:
    language = _language(request.query_params.get("lang"), request)
    form = Form(code=request.query_params.get("code", "")[:64])
    return _render(request, "activate.html", language, form=form, refusals=KEY_REFUSALS)


async def activate_submit(request: Request) -> HTMLResponse:
    async with request.form(**_FORM_LIMITS) as data:
        fields = {name: value for name, value in data.items() if isinstance(value, str)}
    language = _language(fields.get("lang"), request)
    form = Form(code=fields.get("code", ""), keys_text=fields.get("keys", ""))
    render = _Renderer(request, language, form)
    if not same_site(request):
        form.code_error = translate(language, CROSS_SITE)
        return render(403)
    code, form.code_error = check_code(form.code, language)
    form.keys, form.keys_error = _check_keys(form.keys_text, language)
    if code is None:
        return render(400)
    try:
        state, quote = await _support(request, code)
    except errors.InstallationNotFound:
        form.code_error = translate(language, CODE_NOT_FOUND)
        return render(404)
    except errors.DomainError as refusal:
        return render(refusal.status, refusal=refusal)
    render.context.update(state=state, quote=quote)
    if form.good_keys and not form.has_errors:
        render.context["with_keys"] = await _quote(request, code, len(form.good_keys))
    if fields.get("action") != "activate":
        return render(200)
    if not form.keys:
        form.keys_error = translate(language, NO_KEYS)
    if form.has_errors:
        return render(422)
    try:
        result = await activate_keys(request, code=code, raw_keys=form.good_keys)
    except errors.KeyRefused as refusal:
        for position, reason in refusal.refused.items():
            form.keys[position].refusal = reason
        return render(refusal.status, refusal=refusal)
    except errors.LicensesInsufficient as refusal:
        return render(refusal.status, refusal=refusal, short=refusal.required - refusal.supplied)
    except errors.DomainError as refusal:
        return render(refusal.status, refusal=refusal)
    return render(200, template="activated.html", result=result)


class _Renderer:
    """The form page for one request, with what was found so far."""

    def __init__(self, request: Request, language: str, form: Form):
        self.request, self.language, self.form = request, language, form
        self.context: dict[str, Any] = {}

    def __call__(self, status: int, template: str = "activate.html", **context: Any) -> HTMLResponse:
        refusal = context.pop("refusal", None)
        headers = {"Retry-After": str(refusal.retry_after)} if isinstance(refusal, errors.RateLimited) else None
        if refusal is not None:
            context["refusal_title"] = translate(self.language, refusal.title)
            context["refusal_detail"] = translate(self.language, refusal.message, refusal.params or None)
        return _render(
            self.request,
            template,
            self.language,
            status,
            headers,
            form=self.form,
            refusals=KEY_REFUSALS,
            **self.context,
            **context,
        )


async def support_page(request: Request) -> HTMLResponse:
    language = _language(request.query_params.get("lang"), request)
    code, code_error = check_code(request.path_params["code"], language)
    if code is None:
        return _render(request, "support.html", language, 400, code=request.path_params["code"], error=code_error)
    try:
        state, quote = await _support(request, code)
    except errors.InstallationNotFound:
        error = translate(language, CODE_NOT_FOUND)
        return _render(request, "support.html", language, 404, code=code, error=error)
    support_requests = rules.may_open_support_requests(state.support, state.as_of)
    return _render(
        request, "support.html", language, code=code, state=state, quote=quote, support_requests=support_requests
    )


async def certificate_file(request: Request) -> Response:
    """The installation's certificate as a file, for a Timex client to import on a closed network."""
    code, _ = check_code(request.path_params["code"], "en")
    runtime = runtime_of(request)
    if code is None:
        return Response(status_code=400, headers=SECURITY_HEADERS)
    now, today = runtime.clock.read()
    try:
        state = await installations.support_state(driver=runtime.driver, code=code, today=today)
    except errors.InstallationNotFound:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    signer = (await runtime.signing_keys.current()).signer(now)
    certificate = signer.certificate(code, state.support.end, today, now)
    return Response(
        certificate,
        media_type="application/jwt",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{certificate_name(code, today)}"',
        },
    )


def certificate_name(code: str, today: date) -> str:
    """`timex-support-ACME-0001-2026-11-24.jwt`: the code is `[A-Z0-9._-]`, safe in a header and a file name."""
    return f"timex-support-{code}-{today.isoformat()}.jwt"


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=HERE / "static"), name="page-assets")
    app.add_api_route("/activate", activate_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/activate", activate_submit, methods=["POST"], include_in_schema=False)
    app.add_api_route("/support/{code}", support_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/support/{code}/certificate", certificate_file, methods=["GET"], include_in_schema=False)
