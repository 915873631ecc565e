"""Two-step sign-in: RFC 6238's own test vectors, and the cabinet's use of it (a code is good once; with
CABINET_ADMIN_TOTP an admin sets it up before anything else)."""

from datetime import UTC, datetime, timedelta

import pytest

from service import totp
from tests.api import Api
from tests.cabinet import PASSWORD, Visitor, enroll_totp, signed_in_user

RFC_6238_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_codes_are_rfc_6238s_for_sha1(unix_time: int, code: str) -> None:
    step = totp.step_of(datetime.fromtimestamp(unix_time, UTC))
    assert totp.code_at(RFC_6238_SECRET, step, digits=8) == code


def test_a_code_is_taken_one_step_either_side_of_now_and_no_further() -> None:
    now = datetime(2026, 11, 24, 12, 0, 15, tzinfo=UTC)
    step = totp.step_of(now)
    for offset, taken in ((-2, False), (-1, True), (0, True), (1, True), (2, False)):
        code = totp.code_at(RFC_6238_SECRET, step + offset)
        assert (totp.matching_step(RFC_6238_SECRET, code, now) == step + offset) is taken, offset
    assert totp.matching_step(RFC_6238_SECRET, "12345", now) is None
    assert totp.matching_step(RFC_6238_SECRET, "١٢٣٤٥٦", now) is None  # digits, but not ASCII ones


def test_a_sealed_secret_opens_for_its_own_user_only() -> None:
    from uuid import uuid4

    box, secret, owner = totp.SecretBox(b"k" * 32), totp.new_secret(), uuid4()
    sealed = box.seal(secret, owner)
    assert box.open(sealed, owner) == secret
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        box.open(sealed, uuid4())


@pytest.mark.anyio
async def test_after_setting_up_two_step_sign_in_a_user_signs_in_with_a_code_good_once(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        secret = await enroll_totp(api, visitor)
    now = api.clock.now()
    code = totp.code_at(secret, totp.step_of(now) + 1)  # the next step's: the enrolment took this one
    async with Visitor.of(api) as visitor:
        without = await visitor.sign_in("boss", PASSWORD)
        await visitor.get("/cabinet/login")
        wrong = await visitor.post("/cabinet/login", {"username": "boss", "password": PASSWORD, "totp": "000000"})
        await visitor.get("/cabinet/login")
        good = await visitor.post("/cabinet/login", {"username": "boss", "password": PASSWORD, "totp": code})
    async with Visitor.of(api) as visitor:
        await visitor.get("/cabinet/login")
        again = await visitor.post("/cabinet/login", {"username": "boss", "password": PASSWORD, "totp": code})

    assert [r.status_code for r in (without, wrong, good, again)] == [401, 401, 303, 401]
    assert (await api.get("/v1/users", headers=api.admin)).json()["items"][0]["totp_enabled"] is True


@pytest.mark.anyio
async def test_with_cabinet_admin_totp_an_admin_sets_it_up_before_anything_else(api: Api) -> None:
    api.settings.cabinet_admin_totp = True
    reseller = await api.reseller()
    async with Visitor.of(api) as admin, Visitor.of(api) as seller:
        await signed_in_user(api, admin, "boss")
        await signed_in_user(api, seller, "anna", "reseller", reseller["id"])
        held = await admin.get("/cabinet/keys")
        free = await seller.get("/cabinet/keys")
        await enroll_totp(api, admin)
        api.shift_instants(timedelta(seconds=1))
        after = await admin.get("/cabinet/keys")

    assert (held.status_code, held.headers["location"]) == (303, "/cabinet/totp")
    assert free.status_code == 200 and after.status_code == 200
