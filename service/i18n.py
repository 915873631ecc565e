"""Messages in the customer's language, Russian or English, and dates and money as each writes them.

The English text is the message id; the Russian catalogue (`service/locale/ru/LC_MESSAGES/messages.po`) is
gettext's, maintained with Babel (`scripts/messages` extracts every marked message and updates it) and compiled
by Babel once per process, from the `.po` the package ships: no compiled file to forget to rebuild.
tests/test_messages.py fails when a message has no Russian translation. Dates and money are Babel's (CLDR):
`15 марта 2028 г.`, `12 000,00 ₽`.
"""

import gettext
import unicodedata
from datetime import date
from decimal import Decimal
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, get_currency_symbol

LANGUAGES = ("ru", "en")
SOURCE_LANGUAGE = "en"
LOCALES = Path(__file__).resolve().parent / "locale"
CATALOGUE = "messages.po"


def catalogue_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / CATALOGUE


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of `language` (English: the message ids themselves). Fuzzy entries are left out, as
    `msgfmt` leaves them: a translation nobody confirmed is not shown."""
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translate(language: str, message: str, params: dict[str, object] | None = None) -> str:
    """`message` in `language`, its `%(name)s` placeholders filled from `params`."""
    text = translations(language).gettext(message)
    return text % params if params else text


def negotiate(accept_language: str | None, default: str) -> str:
    """The language of an `Accept-Language` header (RFC 9110 §12.5.4): the most preferred of ours by
    quality, the first listed of equal ones; `default` when it names neither."""
    best, best_quality = default, 0.0
    for item in (accept_language or "").split(","):
        tag, _, parameters = item.partition(";")
        language = tag.strip().lower().partition("-")[0]
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        if language in LANGUAGES and quality > best_quality:
            best, best_quality = language, quality
    return best


def long_date(day: date, language: str) -> str:
    """`15 марта 2028 г.`, `March 15, 2028`."""
    return format_date(day, "long", locale=language)


def money(minor: int, currency: str, language: str) -> str:
    """`12 000,00 ₽`, `RUB 12,000.00`: an amount in minor units as the language writes it (Babel), with the space
    CLDR's currency spacing puts between a digit and a symbol made of letters, which Babel leaves out
    (`RUB12,000.00`)."""
    written = format_currency(Decimal(minor).scaleb(-2), currency, locale=language)
    symbol = get_currency_symbol(currency, locale=language)
    if written.startswith(symbol) and written[len(symbol) : len(symbol) + 1].isdigit() and _letter(symbol[-1]):
        return f"{symbol}\u00a0{written[len(symbol) :]}"
    if written.endswith(symbol) and written[-len(symbol) - 1 : -len(symbol)].isdigit() and _letter(symbol[0]):
        return f"{written[: -len(symbol)]}\u00a0{symbol}"
    return written


def _letter(character: str) -> bool:
    """Not a symbol (`₽`, `$`) nor a space: CLDR's `[[:^S:]&[:^Z:]]`."""
    return unicodedata.category(character)[0] not in "SZ"
