"""The self-service pages as a customer uses them, without a browser: `/activate` checks an installation's
support and what renewing costs, activates, says per key what is wrong, and hands over a certificate that
verifies; `/support/{code}` says what Help → About would show. Russian by default, English by choice."""

import html
import re
from datetime import date

import httpx
import pytest

from service.db import create_engine
from service.keyformat import ALPHABET, generate
from tests.api import Api
from tests.conftest import make_settings
from tests.test_api_certificates import _verify_with_jwks_only

pytestmark = pytest.mark.anyio


def typo(key: str) -> str:
    """The key with one symbol mistyped: its check symbols catch any one."""
    symbol = key[-3]
    return key[:-3] + next(s for s in ALPHABET if s != symbol) + key[-2:]


def text(response: httpx.Response) -> str:
    """What a person reads: the page's text, with Babel's narrow and no-break spaces as plain ones."""
    body = re.sub(r"<[^>]+>", " ", response.text[response.text.index("<main") :])
    return " ".join(html.unescape(body).replace("\u202f", " ").replace("\xa0", " ").split())


async def submit(api: Api, code: str, keys: list[str], action: str = "activate", **form: str) -> httpx.Response:
    data = {"code": code, "keys": "\n".join(keys), "action": action, **form}
    return await api.client.post("/activate", data=data, headers={"Sec-Fetch-Site": "same-origin"})


async def test_the_page_is_in_russian_by_default_and_in_english_by_choice(api: Api) -> None:
    russian = await api.get("/activate")
    english = await api.get("/activate", params={"lang": "en"})

    assert (russian.status_code, russian.headers["content-language"]) == (200, "ru")
    assert '<html lang="ru">' in russian.text and "Активация поддержки Timex" in text(russian)
    assert '<label for="code">Код инсталляции</label>' in russian.text
    assert english.headers["content-language"] == "en" and "Activate Timex Support" in text(english)


@pytest.mark.parametrize(
    ("accept_language", "lang", "shown"),
    [
        ("en-US,en;q=0.9", None, "en"),
        ("ru-RU,ru;q=0.9,en;q=0.8", None, "ru"),
        ("de-DE,de;q=0.9", None, "ru"),  # neither: PAGE_LANGUAGE
        ("en-US,en;q=0.9", "ru", "ru"),  # the page's own choice, once made, wins
    ],
)
async def test_the_page_follows_the_browsers_language_until_its_own_choice(
    api: Api, accept_language: str, lang: str | None, shown: str
) -> None:
    page = await api.get(
        "/activate", params={"lang": lang} if lang else {}, headers={"Accept-Language": accept_language}
    )

    assert (page.headers["content-language"], f'<html lang="{shown}">' in page.text) == (shown, True)
    assert page.headers["vary"] == "Accept-Language"


async def test_the_pages_have_a_favicon_of_their_own(api: Api) -> None:
    page = await api.get("/activate")
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page.text)

    assert icon is not None
    served = await api.get(icon[1])
    assert (served.status_code, served.headers["content-type"]) == (200, "image/svg+xml")


async def test_the_page_language_is_a_setting(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with Api.started(make_settings(database_url, page_language="en"), engine, date(2026, 11, 24)) as api:
            assert (await api.get("/activate")).headers["content-language"] == "en"
    finally:
        await engine.dispose()


async def test_checking_shows_the_support_state_and_the_renewal_cost_written_the_russian_way(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-03-15")
    keys = await api.keys(2)

    page = await submit(api, "acme-1", keys, action="check")

    assert page.status_code == 200
    assert "Поддержка закончилась 15 марта 2026 г." in text(page)
    assert "нужно лицензий: 1, по 12 000,00 ₽, всего 12 000,00 ₽" in text(page)
    assert "С введёнными ключами (2) поддержка будет действовать до 15 мая 2028 г." in text(page)
    assert (await api.support("ACME-1"))["support_end"] == "2026-03-15"  # a check activates nothing


async def test_keys_are_read_as_pasted_one_per_line_or_separated_by_spaces(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    keys = await api.keys(3)
    pasted = f"  {keys[0]} {keys[1].lower()}\n\n{keys[2].replace('-', ' ')}  "

    page = await api.client.post("/activate", data={"code": "ACME-1", "keys": pasted, "action": "check"})

    assert page.status_code == 200
    assert text(page).count("записан верно") == 3


async def test_a_typo_is_shown_at_its_key_and_nothing_is_activated(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    good, other = await api.keys(2)

    page = await submit(api, "ACME-1", [good, typo(other)])

    assert page.status_code == 422
    assert f"{good} — записан верно" in text(page)
    assert f"{typo(other)} — Это не ключ поддержки Timex: проверьте, нет ли опечатки." in text(page)
    assert "Ключ 2: Это не ключ поддержки Timex" in text(page)  # the summary at the top names it too
    assert set((await api.key_statuses()).values()) == {"issued"}


async def test_each_refused_key_says_why(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    await api.installation("OTHER", purchased_on="2025-11-24")
    good, used, revoked = await api.keys(3)
    assert (await api.activate("OTHER", [used])).status_code == 201
    listed = await api.get("/v1/keys", params={"status": "issued"}, headers=api.admin)
    [revoked_id] = [k["key_id"] for k in listed.json()["items"] if revoked.startswith(k["prefix"])]
    await api.post(f"/v1/keys/{revoked_id}/revoke", headers=api.admin)
    unknown = generate()

    page = await submit(api, "ACME-1", [good, used, revoked, unknown])

    assert page.status_code == 404
    assert f"{good} — записан верно" in text(page)
    assert f"{used} — Этот ключ уже использован." in text(page)
    assert f"{revoked} — Этот ключ отозван, его нельзя использовать." in text(page)
    assert f"{unknown} — Такой ключ не выпускался: проверьте, нет ли опечатки." in text(page)
    assert (await api.support("ACME-1"))["support_end"] == "2026-11-24"


async def test_too_few_licenses_say_what_is_missing_and_its_price(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2024-03-15")  # lapsed since 2025-03-15, over a year ago
    [key] = await api.keys(1)

    check = await submit(api, "ACME-1", [key], action="check")
    page = await submit(api, "ACME-1", [key], lang="en")

    assert "Введённых ключей (1) мало: не хватает лицензий: 1, на 12 000,00 ₽." in text(check)
    assert page.status_code == 402
    # CLDR's currency spacing: a space (no-break) between a symbol made of letters and the digits.
    assert "Missing: 1, at RUB 12,000.00 each, RUB 12,000.00 in all." in text(page)


async def test_activating_shows_the_result_in_words_and_the_certificate_verifies(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    keys = await api.keys(2)

    page = await submit(api, "acme-1", keys)
    certificate = await api.get("/support/ACME-1/certificate")

    assert page.status_code == 200
    assert "Теперь поддержка действует до 24 марта 2029 г." in text(page)
    assert "Добавлено месяцев: 28, из них бонусных за раннее продление: 4." in text(page)
    assert '<meta http-equiv="refresh" content="1; url=/support/ACME-1/certificate">' in page.text
    assert certificate.headers["content-disposition"] == ('attachment; filename="timex-support-ACME-1-2026-11-24.jwt"')
    claims = await _verify_with_jwks_only(api, certificate.text)
    assert (claims["sub"], claims["support_end"]) == ("ACME-1", "2029-03-24")


async def test_the_code_is_explained_in_words_when_it_is_wrong(api: Api) -> None:
    cyrillic = await submit(api, "АКМЕ-1", [generate()], lang="en")
    unknown = await submit(api, "NOPE", [generate()])

    assert cyrillic.status_code == 400
    assert "must be an installation code as Help → About shows it: Latin letters" in text(cyrillic)
    assert "[A-Za-z" not in cyrillic.text
    assert unknown.status_code == 404
    assert "Нет инсталляции с таким кодом: сверьте его в Timex, «Справка → О программе»." in text(unknown)


async def test_the_page_is_limited_as_the_api_is_for_the_same_client(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    for _ in range(api.settings.activation_failure_limit):
        assert (await submit(api, "ACME-1", [generate()])).status_code == 404

    page = await submit(api, "ACME-1", [generate()])
    from_the_api = await api.activate("ACME-1", [generate()])

    assert page.status_code == 429 and "Слишком много запросов" in text(page)
    assert 0 < int(page.headers["retry-after"]) <= api.settings.activation_failure_window_seconds
    assert from_the_api.status_code == 429


async def test_typos_are_refused_before_the_limit_and_do_not_count(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    for _ in range(api.settings.activation_failure_limit + 1):
        assert (await submit(api, "ACME-1", [typo(key)])).status_code == 422

    assert (await submit(api, "ACME-1", [key])).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://elsewhere.example"}, {"Sec-Fetch-Site": "same-site"}],
)
async def test_a_post_from_another_site_is_refused(api: Api, headers: dict[str, str]) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    [key] = await api.keys(1)

    page = await api.client.post(
        "/activate", data={"code": "ACME-1", "keys": key, "action": "activate"}, headers=headers
    )

    assert page.status_code == 403
    assert "Эту форму можно отправить только с её собственной страницы." in text(page)
    assert set((await api.key_statuses()).values()) == {"issued"}


async def test_a_post_from_the_page_itself_is_taken(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    [key] = await api.keys(1)

    page = await api.client.post(
        "/activate",
        data={"code": "ACME-1", "keys": key, "action": "activate"},
        headers={"Origin": "http://testserver"},
    )

    assert page.status_code == 200


@pytest.mark.parametrize("path", ["/activate", "/support/ACME-1", "/support/ACME-1/certificate"])
async def test_no_page_can_be_framed_or_run_a_script(api: Api, path: str) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")

    response = await api.get(path)

    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_posted_page_is_protected_as_well(api: Api) -> None:
    page = await submit(api, "ACME-1", [generate()])

    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_the_support_page_says_what_help_about_shows(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    await api.activate("ACME-1", [key])

    russian = await api.get("/support/acme-1")
    english = await api.get("/support/ACME-1", params={"lang": "en"})

    assert "Поддержка действует до 24 января 2028 г. (осталось дней: 426)" in text(russian)
    assert "Обращения в поддержку можно открывать" in text(russian)
    assert "Получено бонусных месяцев 2" in text(russian)
    assert "Support active until January 24, 2028 (days left: 426)" in text(english)
    assert "Support requests may be opened" in text(english)


async def test_the_support_page_of_a_lapsed_installation(api: Api) -> None:
    await api.installation("ACME-1", purchased_on="2025-03-15")

    page = await api.get("/support/ACME-1")

    assert "Поддержка закончилась 15 марта 2026 г." in text(page)
    assert "можно будет открывать снова после продления поддержки" in text(page)
    assert "лицензий: 1, 12 000,00 ₽" in text(page)


async def test_the_support_page_of_an_unknown_code(api: Api) -> None:
    page = await api.get("/support/NOPE", params={"lang": "en"})

    assert page.status_code == 404
    assert "No installation has this code: check it in Timex, Help → About." in text(page)
