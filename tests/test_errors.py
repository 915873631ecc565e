"""A refusal's code, HTTP status and documented example are said once, on its class (`service.errors`)."""

import pytest

from service.errors import N_, DomainError, Example


def test_a_code_named_without_its_status_is_refused_when_its_class_is_made() -> None:
    with pytest.raises(TypeError, match="status"):

        class Teapot(DomainError):
            code = "teapot"
            title = N_("I am a teapot")
            example = Example("I am a teapot")


def test_a_refusal_sharing_its_parents_code_shares_its_status() -> None:
    class Stricter(DomainError):
        code = "stricter"
        status = 400
        example = Example("Refused")

    class StricterStill(Stricter):
        title = N_("Refused again")

    assert (StricterStill.code, StricterStill.status) == ("stricter", 400)
