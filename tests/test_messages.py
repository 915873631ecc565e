"""Every message in Russian and in English: the Russian catalogue translates everything the code and the page
templates mark for it (extracted by Babel as `scripts/messages` does), every problem `code` comes in both
languages with its `code` unchanged, and the error reference explains every code in both."""

import re
import uuid
from pathlib import Path

import orjson
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from starlette.requests import Request

from service import errors
from service.http import problems
from service.http.app import create_app
from service.i18n import catalogue_path, negotiate
from tests.conftest import NO_DATABASE, make_settings

ROOT = Path(__file__).resolve().parent.parent
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def _extracted() -> set[str]:
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = extract_from_dir(ROOT / "service", method_map, options_map, keywords={"N_": None, "_": None})
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


def _catalogue() -> dict[str, str]:
    with catalogue_path("ru").open("rb") as po:
        catalog = read_po(po)
    return {m.id: m.string for m in catalog if m.id and not m.fuzzy}


def test_every_message_has_its_russian_translation_with_the_same_placeholders() -> None:
    extracted, russian = _extracted(), _catalogue()

    assert len(extracted) > 100
    untranslated = sorted(m for m in extracted if not russian.get(m))
    assert untranslated == [], "run scripts/messages and translate these"
    for message in extracted:
        assert sorted(PLACEHOLDER.findall(russian[message])) == sorted(PLACEHOLDER.findall(message)), message


def test_the_catalogue_holds_no_message_the_code_no_longer_has() -> None:
    assert set(_catalogue()) - _extracted() == set()


def _domain_errors(cls: type[errors.DomainError] = errors.DomainError) -> dict[str, type[errors.DomainError]]:
    """Each code, by the class that names it (a subclass with a title of its own keeps its parent's code)."""
    found = {}
    for subclass in cls.__subclasses__():
        found |= _domain_errors(subclass)
        if "code" in vars(subclass):
            found[subclass.code] = subclass
    return found


def _example(cls: type[errors.DomainError]) -> errors.DomainError:
    if cls is errors.LicensesInsufficient:
        return cls(required=2, supplied=1)
    if cls is errors.RateLimited:
        return cls(retry_after=30)
    if cls is errors.VoidHasDependents:
        return cls([uuid.uuid4()])
    return cls()


HTTP_CODES = {"not_found": 404, "method_not_allowed": 405, "payload_too_large": 413}
CODES = sorted({*_domain_errors(), *HTTP_CODES, "internal_error"})


@pytest.fixture(scope="module")
def app():
    return create_app(make_settings(NO_DATABASE))


def _request(app, language: str) -> Request:
    headers = [(b"accept-language", language.encode())]
    return Request({"type": "http", "app": app, "method": "GET", "path": "/", "headers": headers, "query_string": b""})


async def _problem(app, code: str, language: str):
    request = _request(app, language)
    if code == "internal_error":
        return await problems.unexpected_error(request, RuntimeError("boom"))
    if code in HTTP_CODES:
        return await problems.http_error(request, problems.HTTPException(HTTP_CODES[code]))
    return await problems.domain_error(request, _example(_domain_errors()[code]))


@pytest.mark.anyio
@pytest.mark.parametrize("code", CODES)
async def test_every_problem_is_in_russian_and_in_english_with_its_code(app, code: str) -> None:
    russian = await _problem(app, code, "ru")
    english = await _problem(app, code, "en-GB,en;q=0.9")
    ru, en = orjson.loads(russian.body), orjson.loads(english.body)

    assert (ru["code"], en["code"]) == (code, code)
    assert (russian.headers["content-language"], english.headers["content-language"]) == ("ru", "en")
    assert CYRILLIC.search(ru["title"]) and CYRILLIC.search(ru["detail"]), ru
    assert not CYRILLIC.search(en["title"] + en["detail"]), en


def test_the_error_reference_explains_every_code_in_both_languages() -> None:
    reference = (ROOT / "service" / "docs" / "errors.md").read_text(encoding="utf-8")
    english, _, russian = reference.partition("## Русский")

    for code in CODES:
        assert f"| `{code}` |" in english and f"| `{code}` |" in russian, code


@pytest.mark.parametrize(
    ("header", "default", "language"),
    [
        ("ru", "en", "ru"),
        ("ru-RU,ru;q=0.9,en-US;q=0.8", "en", "ru"),
        ("en-US,en;q=0.9,ru;q=0.8", "ru", "en"),
        ("de-DE,de;q=0.9", "en", "en"),
        ("de-DE,de;q=0.9", "ru", "ru"),
        ("de, en;q=0.2, ru;q=0.5", "en", "ru"),
        (None, "ru", "ru"),
        ("ru;q=nonsense, en", "ru", "en"),
    ],
)
def test_the_language_is_the_most_preferred_of_ours_else_the_default(
    header: str | None, default: str, language: str
) -> None:
    assert negotiate(header, default) == language
