"""What is wrong with a request's field, in words and in the client's language: pydantic's errors (and the
checks of `schemas/common.py`) described by what the field must be, never by a regex or an echo of the input."""

from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import N_
from service.http.schemas.common import INSTALLATION_CODE_PATTERN, LINE_PATTERN, TEXT_PATTERN
from service.i18n import translate

# By pydantic's error type; `%(…)s` are filled from the error's context.
_BY_TYPE = {
    "missing": N_("is required"),
    "extra_forbidden": N_("is not a field of this request"),
    "string_type": N_("must be text"),
    "string_unicode": N_("must be text"),
    "string_too_short": N_("must be at least %(min_length)s character(s) long"),
    "string_too_long": N_("must be at most %(max_length)s characters long"),
    "too_short": N_("must have at least %(min_length)s item(s)"),
    "too_long": N_("must have at most %(max_length)s items"),
    "int_type": N_("must be a whole number"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "greater_than_equal": N_("must be at least %(ge)s"),
    "greater_than": N_("must be more than %(gt)s"),
    "less_than_equal": N_("must be at most %(le)s"),
    "less_than": N_("must be less than %(lt)s"),
    "bool_type": N_("must be true or false"),
    "bool_parsing": N_("must be true or false"),
    "list_type": N_("must be a list"),
    "dict_type": N_("must be an object"),
    "model_type": N_("must be an object"),
    "model_attributes_type": N_("must be an object"),
    "date_type": N_("must be a date written YYYY-MM-DD"),
    "date_parsing": N_("must be a date written YYYY-MM-DD"),
    "date_from_datetime_parsing": N_("must be a date written YYYY-MM-DD"),
    "uuid_type": N_("must be an id (a UUID)"),
    "uuid_parsing": N_("must be an id (a UUID)"),
    "literal_error": N_("must be one of: %(expected)s"),
    "json_invalid": N_("is not valid JSON"),
}
_BY_PATTERN = {
    INSTALLATION_CODE_PATTERN: N_(
        "must be an installation code as Help → About shows it: Latin letters, digits, dots, underscores and "
        "hyphens, beginning with a letter or a digit"
    ),
    LINE_PATTERN: N_("must be one line of text, without control, text-direction or line-separator characters"),
    TEXT_PATTERN: N_("must be text without control, text-direction or line-separator characters"),
}
_NOT_ACCEPTED = N_("has a value that is not accepted")
_THE_REQUEST = N_("the request")
_FIELD_PROBLEM = N_("%(field)s: %(problem)s")
_SOURCES = {"body", "query", "path", "header", "cookie"}


def field_name(loc: Sequence[str | int], language: str) -> str:
    """`keys.1` for the second key of the body; the request itself when the error is the whole body's."""
    path = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    return ".".join(map(str, path)) if path else translate(language, _THE_REQUEST)


def problem_of(error: Mapping[str, Any], language: str) -> str:
    """What is wrong with the field, without naming it: `must be a whole number`."""
    context = error.get("ctx") or {}
    kind = error["type"]
    if kind == "value_error" and "error" in context:
        # The checks of schemas/common.py raise ValueError with a message id.
        return translate(language, str(context["error"]))
    if kind == "string_pattern_mismatch":
        return translate(language, _BY_PATTERN.get(context.get("pattern", ""), _NOT_ACCEPTED))
    message = _BY_TYPE.get(kind, _NOT_ACCEPTED)
    try:
        return translate(language, message, {name: str(value) for name, value in context.items()} or None)
    except KeyError:  # a context without the value the message names
        return translate(language, _NOT_ACCEPTED)


def describe(error: Mapping[str, Any], language: str) -> str:
    """`keys.1: must be at most 64 characters long`."""
    return translate(
        language, _FIELD_PROBLEM, {"field": field_name(error["loc"], language), "problem": problem_of(error, language)}
    )
