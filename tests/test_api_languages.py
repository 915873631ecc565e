"""The API refuses in the client's language: `Accept-Language: ru` gets Russian, anything else English (or
`DEFAULT_LANGUAGE`), named by `Content-Language`; the `code` is the same in both. Validation says which field
and what is wrong with it in words, never as a regex."""

from datetime import date

import pytest

from service.db import create_engine
from tests.api import Api
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

RU = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"}


async def test_a_refusal_is_in_russian_for_a_russian_client_and_in_english_otherwise(api: Api) -> None:
    russian = await api.get("/v1/installations/NOPE/support", headers=RU)
    english = await api.get("/v1/installations/NOPE/support", headers={"Accept-Language": "de-DE, en;q=0.5"})
    unspoken = await api.get("/v1/installations/NOPE/support")

    assert (russian.json()["title"], russian.json()["detail"]) == (
        "Такой инсталляции нет",
        "Нет инсталляции с кодом NOPE",
    )
    assert russian.headers["content-language"] == "ru"
    assert (english.json()["title"], english.json()["detail"]) == (
        "No such installation",
        "No installation has the code NOPE",
    )
    assert english.headers["content-language"] == unspoken.headers["content-language"] == "en"
    assert {r.json()["code"] for r in (russian, english, unspoken)} == {"installation_not_found"}
    assert {r.status_code for r in (russian, english, unspoken)} == {404}


async def test_the_default_language_is_a_setting(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        settings = make_settings(database_url, default_language="ru")
        async with Api.started(settings, engine, date(2026, 11, 24)) as api:
            default = await api.get("/v1/installations/NOPE/support", headers={"Accept-Language": "de"})
            english = await api.get("/v1/installations/NOPE/support", headers={"Accept-Language": "en"})
    finally:
        await engine.dispose()

    assert (default.headers["content-language"], default.json()["title"]) == ("ru", "Такой инсталляции нет")
    assert english.json()["title"] == "No such installation"


async def test_a_cyrillic_code_is_refused_in_words_not_with_a_regex(api: Api) -> None:
    russian = await api.activate("АКМЕ-1", ["TXS-…"], headers=RU)
    english = await api.activate("АКМЕ-1", ["TXS-…"])

    assert (russian.status_code, russian.json()["code"]) == (400, "invalid_request")
    assert russian.json()["detail"] == (
        "installation: должно быть кодом инсталляции, как его показывает «Справка → О программе»: латинские буквы, "
        "цифры, точки, подчёркивания и дефисы, в начале буква или цифра"
    )
    assert english.json()["errors"] == [
        {
            "loc": ["body", "installation"],
            "msg": "must be an installation code as Help → About shows it: Latin letters, digits, dots, underscores "
            "and hyphens, beginning with a letter or a digit",
            "type": "string_pattern_mismatch",
        }
    ]
    assert "[A-Za-z" not in russian.text + english.text


async def test_each_field_is_named_with_what_is_wrong_with_it(api: Api) -> None:
    response = await api.post("/v1/activations", {"keys": [], "extra": 1}, headers=RU)

    assert response.json()["detail"] == (
        "installation: обязательно; keys: должно содержать элементов не меньше: 1; "
        "extra: не является полем этого запроса"
    )


async def test_a_refusal_with_a_quote_keeps_its_code_and_quote_in_russian(api: Api) -> None:
    await api.installation("ACME", purchased_on="2024-03-15")
    [key] = await api.keys(1)

    response = await api.activate("ACME", [key], headers=RU)

    assert (response.status_code, response.json()["code"]) == (402, "licenses_insufficient")
    assert response.json()["title"] == "Лицензий не хватает, чтобы поддержка снова действовала"
    assert response.json()["detail"] == "Ключей передано: 1, нужно: 2"
    assert response.json()["quote"]["licenses_required"] == 2


async def test_what_the_framework_refuses_is_in_russian_too(api: Api) -> None:
    unknown_path = await api.get("/v1/nothing-here", headers=RU)
    repeated = await api.get("/v1/quote?support_end=2026-01-01&support_end=2026-02-01", headers=RU)
    too_large = await api.post("/v1/activations", content=b"x" * (api.settings.max_body_bytes + 1), headers=RU)

    assert (unknown_path.json()["code"], unknown_path.json()["detail"]) == ("not_found", "По этому адресу ничего нет")
    assert repeated.json()["detail"] == "Параметр запроса указан больше одного раза"
    assert repeated.headers["content-language"] == "ru"
    assert too_large.json()["detail"] == f"Тело запроса ограничено {api.settings.max_body_bytes} байт"
