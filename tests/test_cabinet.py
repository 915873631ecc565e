"""The cabinet over HTTP: sign-in and its limits, sessions and their cookie, CSRF, and the pages calling the
service as the API does (the browser walk is tests/test_cabinet_browser.py)."""

import asyncio
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import text

from service import rules, signing_keys, webhooks
from service.auth import Principal
from service.certificates import generate_private_key
from service.i18n import long_date, money
from tests.api import ISSUED_KEYS, Api
from tests.cabinet import PASSWORD, Visitor, invite, signed_in_user
from tests.conftest import make_settings, service

pytestmark = pytest.mark.anyio

TODAY = date(2026, 11, 24)  # where the `api` fixture's clock stands


async def test_the_session_cookie_is_httponly_lax_and_secure_except_on_plain_http_to_this_machine(api: Api) -> None:
    user = await invite(api, "boss")
    async with Visitor.of(api) as visitor:
        await visitor.set_password(user["setup_url"], PASSWORD)
        local = await visitor.sign_in("boss", PASSWORD)
    async with Visitor.of(api, base_url="https://licensing.example.com") as visitor:
        remote = await visitor.sign_in("boss", PASSWORD)

    local_cookie, remote_cookie = local.headers["set-cookie"], remote.headers["set-cookie"]
    assert local_cookie.startswith("timex_cabinet=") and "HttpOnly" in local_cookie and "SameSite=lax" in local_cookie
    assert "Secure" not in local_cookie
    assert "Secure" in remote_cookie and "HttpOnly" in remote_cookie


async def test_pages_behind_sign_in_send_a_stranger_to_the_sign_in_page(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        for path in ("/cabinet/", "/cabinet/keys", "/cabinet/users", "/cabinet/installations/ACME-1"):
            response = await visitor.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/cabinet/login"), path


async def test_every_page_is_strict_about_what_it_loads_and_cannot_be_framed(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        for path in ("/cabinet/login", "/cabinet/", "/cabinet/keys", "/cabinet/audit"):
            response = await visitor.get(path)
            assert "default-src 'none'" in response.headers["content-security-policy"], path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            assert "<script" not in response.text


async def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        await visitor.get("/cabinet/resellers")
        without = await visitor.post("/cabinet/resellers", {"name": "Sneaky"}, csrf=False)
        wrong = await visitor.client.post(
            "/cabinet/resellers",
            data={"name": "Sneaky", "csrf_token": "guess"},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        cross_site = await visitor.client.post(
            "/cabinet/resellers",
            data={"name": "Sneaky", "csrf_token": visitor.csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        login_without = await visitor.client.post("/cabinet/login", data={"username": "boss", "password": PASSWORD})

    assert [r.status_code for r in (without, wrong, cross_site, login_without)] == [403, 403, 403, 403]
    resellers = (await api.get("/v1/users", headers=api.admin)).json()["items"]
    assert resellers  # the admin is there; no reseller was made:
    audit = (await api.get("/v1/audit-events", headers=api.admin)).json()["items"]
    assert "reseller.created" not in [e["action"] for e in audit]


async def test_ten_wrong_passwords_limit_that_address_and_username_only(api: Api) -> None:
    other = await invite(api, "other")
    boss = await invite(api, "boss")
    async with Visitor.of(api, address="198.51.100.1") as visitor:
        await visitor.set_password(boss["setup_url"], PASSWORD)
        await visitor.set_password(other["setup_url"], PASSWORD)
        wrong = [(await visitor.sign_in("boss", "not the password")).status_code for _ in range(10)]
        limited = await visitor.sign_in("boss", PASSWORD)
        other_user = await visitor.sign_in("other", PASSWORD)
    async with Visitor.of(api, address="198.51.100.2") as elsewhere:
        same_user_elsewhere = await elsewhere.sign_in("boss", PASSWORD)

    assert wrong == [401] * 10
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "Too many requests" in limited.text or "Слишком много" in limited.text
    assert other_user.status_code == 303
    assert same_user_elsewhere.status_code == 303


async def test_a_session_ends_after_its_idle_time_and_its_lifetime(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        api.shift_instants(timedelta(minutes=29))
        assert (await visitor.get("/cabinet/")).status_code == 200  # used: idle time starts again
        api.shift_instants(timedelta(minutes=58))
        assert (await visitor.get("/cabinet/")).status_code == 200
        api.shift_instants(timedelta(minutes=89))
        assert (await visitor.get("/cabinet/")).status_code == 303

    async with Visitor.of(api) as visitor:
        api.shift_instants(timedelta())
        assert (await visitor.sign_in("boss", PASSWORD)).status_code == 303
        for minutes in range(25, 12 * 60, 25):
            api.shift_instants(timedelta(minutes=minutes))
            assert (await visitor.get("/cabinet/")).status_code == 200, minutes
        api.shift_instants(timedelta(hours=12))
        assert (await visitor.get("/cabinet/")).status_code == 303


async def test_signing_out_ends_the_session(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        token = visitor.client.cookies["timex_cabinet"]
        await visitor.get("/cabinet/")
        assert (await visitor.post("/cabinet/logout", {})).status_code == 303
        visitor.client.cookies.set("timex_cabinet", token, path="/cabinet")
        assert (await visitor.get("/cabinet/")).status_code == 303


async def test_renewals_lists_the_bonus_window_with_the_day_the_bonus_is_lost_and_lapsed_ones_with_their_price(
    api: Api,
) -> None:
    reseller = await api.reseller()
    soon = TODAY - timedelta(days=365 - 20)  # a sale whose year ends in 20 days
    await api.installation("SOON-1", headers=reseller["headers"], purchased_on=TODAY - timedelta(days=20))
    await api.installation("SOON-2", reseller_id=reseller["id"], purchased_on=soon)
    await api.installation("OLD-1", reseller_id=reseller["id"], support_end=date(2024, 6, 30))
    await api.installation("ELSEWHERE", purchased_on=soon)  # another reseller's (Smartec's own)
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", reseller["id"])
        page = (await visitor.get("/cabinet/")).text

    support = rules.purchase(soon, soon)
    assert 'data-code="SOON-2"' in page and 'data-code="SOON-1"' not in page and "ELSEWHERE" not in page
    expiring = page[page.index('id="expiring"') : page.index('id="lapsed"')]
    assert long_date(rules.bonus_lost_on(support), "en") in expiring
    lapsed = page[page.index('id="lapsed"') :]
    quote = rules.quote(rules.existing_customer(date(2024, 6, 30)), TODAY, api.settings.unit_price_minor)
    assert 'data-code="OLD-1"' in lapsed and money(quote.total_minor, "RUB", "en") in lapsed
    assert quote.licenses_required == 3


async def test_a_reseller_user_sees_only_its_own_installations(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    await api.installation("THEIRS-1", headers=theirs["headers"], purchased_on=TODAY)
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", mine["id"])
        page = await visitor.get("/cabinet/installations/THEIRS-1")
        staff_page = await visitor.get("/cabinet/resellers")
    assert page.status_code == 403 and staff_page.status_code == 403


async def test_a_reseller_user_registers_a_sale_issues_keys_downloads_them_and_revokes_one(api: Api) -> None:
    reseller = await api.reseller()
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", reseller["id"])
        await visitor.get("/cabinet/sales")
        sold = await visitor.post("/cabinet/sales", {"code": "shop-7", "purchased_on": TODAY.isoformat()})
        await visitor.get("/cabinet/keys")
        issued = await visitor.post("/cabinet/keys", {"count": "3"})
        shown = re.findall(r"<li><code>(TXS-[^<]+)</code></li>", issued.text)
        ISSUED_KEYS.update(shown)
        batch = re.search(r'name="batch" value="([^"]+)"', issued.text).group(1)
        download = await visitor.post("/cabinet/keys/csv", {"batch": batch})
        listed = await visitor.get("/cabinet/keys")
        key_id = re.search(r'data-key-id="([^"]+)"', listed.text).group(1)
        revoked = await visitor.post(f"/cabinet/keys/{key_id}/revoke", {})
        too_many = await visitor.post("/cabinet/keys", {"count": "101"})

    assert (sold.status_code, sold.headers["location"]) == (303, "/cabinet/installations/SHOP-7")
    installation = (await api.get("/v1/installations/SHOP-7", headers=api.admin)).json()
    assert installation["reseller_id"] == reseller["id"]
    assert issued.status_code == 201 and len(shown) == 3
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [row["key"] for row in rows] == shown
    assert revoked.status_code == 303
    statuses = await api.key_statuses()
    assert statuses[key_id] == "revoked" and sorted(statuses.values()) == ["issued", "issued", "revoked"]
    keys = (await api.get("/v1/keys", headers=reseller["headers"])).json()["items"]
    assert len(keys) == 3  # the reseller's own
    assert too_many.status_code == 422


async def test_a_batch_of_keys_downloads_only_in_the_session_it_was_issued_in(api: Api) -> None:
    reseller = await api.reseller()
    async with Visitor.of(api) as visitor, Visitor.of(api) as other:
        await signed_in_user(api, visitor, "anna", "reseller", reseller["id"])
        await visitor.get("/cabinet/keys")
        issued = await visitor.post("/cabinet/keys", {"count": "1"})
        ISSUED_KEYS.update(re.findall(r"<li><code>(TXS-[^<]+)</code></li>", issued.text))
        batch = re.search(r'name="batch" value="([^"]+)"', issued.text).group(1)
        await signed_in_user(api, other, "boss")
        await other.get("/cabinet/keys")
        refused = await other.post("/cabinet/keys/csv", {"batch": batch})
    assert refused.status_code == 400 and "TXS-" not in refused.text


async def test_a_reseller_user_cannot_revoke_another_resellers_key(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    await api.keys(1, reseller_id=theirs["id"])
    [key_id] = (await api.key_statuses()).keys()
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", mine["id"])
        await visitor.get("/cabinet/keys")
        refused = await visitor.post(f"/cabinet/keys/{key_id}/revoke", {})
    assert refused.status_code == 403
    assert (await api.key_statuses())[key_id] == "issued"


async def test_staff_create_a_reseller_invite_its_user_and_disable_it(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        await visitor.get("/cabinet/resellers")
        created = await visitor.post("/cabinet/resellers", {"name": "Okhrana LLC"})
        reseller_id = re.search(r'href="/cabinet/resellers/([0-9a-f-]+)"', created.text).group(1)
        await visitor.get("/cabinet/users")
        invited = await visitor.post(
            "/cabinet/users", {"username": "ivan", "role": "reseller", "reseller_id": reseller_id}
        )
        link = re.search(r'<code id="setup-link">([^<]+)</code>', invited.text).group(1)
        async with Visitor.of(api) as ivan:
            await ivan.set_password(link, PASSWORD)
            assert (await ivan.sign_in("ivan", PASSWORD)).status_code == 303
            await visitor.get(f"/cabinet/resellers/{reseller_id}")
            disabled = await visitor.post(f"/cabinet/resellers/{reseller_id}/disable", {})
            assert (await ivan.get("/cabinet/")).status_code == 303

    assert created.status_code == 201 and "rs_" in created.text
    assert invited.status_code == 201 and disabled.status_code == 303
    audit = (await api.get("/v1/audit-events", headers=api.admin)).json()["items"]
    assert [(e["actor"], e["action"]) for e in audit if e["actor"] == "boss"][:3] == [
        ("boss", "reseller.disabled"),
        ("boss", "user.invited"),
        ("boss", "reseller.created"),
    ]


async def test_the_language_is_russian_by_default_english_by_accept_language_or_choice(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        russian = await visitor.get("/cabinet/login")
        chosen = await visitor.get("/cabinet/login?lang=en")
        remembered = await visitor.get("/cabinet/login")
    async with Visitor.of(api, **{"Accept-Language": "en-US,en;q=0.9"}) as visitor:
        english = await visitor.get("/cabinet/login")
    assert 'lang="ru"' in russian.text and "Войти" in russian.text
    assert 'lang="en"' in chosen.text and 'lang="en"' in remembered.text and 'lang="en"' in english.text


async def _activations(api: Api, code: str, count: int) -> list[str]:
    ids = []
    for key in await api.keys(count):
        response = await api.activate(code, [key])
        assert response.status_code in (200, 201), response.text
        ids.append(response.json()["activation_id"])
    return ids


async def test_staff_see_what_a_cascading_void_takes_before_confirming_it(api: Api) -> None:
    await api.installation("ACME-1", purchased_on=date(2025, 12, 1))
    first, second = await _activations(api, "ACME-1", 2)
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor:
        await signed_in_user(api, visitor, "boss")
        preview = await visitor.get(f"/cabinet/installations/ACME-1/void/{first}")
        voided = await visitor.post(
            f"/cabinet/installations/ACME-1/void/{first}", {"reason": "Refund 77", "dependents": second}
        )

    assert f'data-activation="{second}"' in preview.text and "Void all 2" in preview.text
    assert voided.status_code == 303
    ledger = (await api.get("/v1/installations/ACME-1", headers=api.admin)).json()
    assert ledger["support_end"] == "2026-12-01"
    audit = (await api.get("/v1/audit-events", headers=api.admin)).json()["items"][0]
    assert (audit["actor"], audit["action"], audit["target"]) == ("boss", "activation.voided", "ACME-1")
    assert audit["details"] == {"voided": [second, first], "reason": "Refund 77"}


async def test_a_void_confirmed_on_a_preview_the_ledger_has_outgrown_voids_nothing(api: Api) -> None:
    await api.installation("ACME-1", purchased_on=date(2025, 12, 1))
    first, second = await _activations(api, "ACME-1", 2)
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        await visitor.get(f"/cabinet/installations/ACME-1/void/{first}")
        [third] = await _activations(api, "ACME-1", 1)  # after the page was shown
        refused = await visitor.post(
            f"/cabinet/installations/ACME-1/void/{first}", {"reason": "Refund", "dependents": second}
        )

    assert refused.status_code == 409 and f'data-activation="{third}"' in refused.text
    ledger = (await api.get("/v1/installations/ACME-1", headers=api.admin)).json()
    assert all(activation["voided_at"] is None for activation in ledger["activations"])


@pytest.fixture
async def hooked(database_url: str) -> AsyncIterator[Api]:
    """The service allowed to send to 127.0.0.1:9, where nothing listens: every delivery fails."""
    async with service(make_settings(database_url, webhook_allowed_hosts=["127.0.0.1:9"])) as api:
        yield api


async def test_a_reseller_user_adds_a_webhook_endpoint_sees_its_deliveries_and_sends_a_failed_one_again(
    hooked: Api,
) -> None:
    api = hooked
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor, Visitor.of(api) as other:
        await signed_in_user(api, visitor, "anna", "reseller", mine["id"])
        await visitor.get("/cabinet/webhooks")
        refused = await visitor.post("/cabinet/webhooks", {"url": "http://example.com/hook"})
        added = await visitor.post(
            "/cabinet/webhooks", {"url": "http://127.0.0.1:9/hook", "type:installation.registered": "1"}
        )
        endpoint_id = re.search(r'href="/cabinet/webhooks/([0-9a-f-]+)"', added.text).group(1)
        await api.installation("SHOP-1", headers=mine["headers"], purchased_on=TODAY)
        await webhooks.dispatch(driver=api.driver, now=api.clock.now())
        async with api.engine.begin() as connection:
            await connection.execute(text("UPDATE webhook_deliveries SET status = 'failed'"))
        page = await visitor.get(f"/cabinet/webhooks/{endpoint_id}")
        delivery_id = re.search(r'data-delivery="([0-9a-f-]+)" data-status="failed"', page.text).group(1)
        again = await visitor.post(f"/cabinet/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", {})
        after = await visitor.get(f"/cabinet/webhooks/{endpoint_id}")
        await signed_in_user(api, other, "ivan", "reseller", theirs["id"])
        foreign = await other.get(f"/cabinet/webhooks/{endpoint_id}")

    assert refused.status_code == 400 and 'aria-invalid="true"' in refused.text
    assert added.status_code == 201 and 'id="webhook-secret"' in added.text
    assert "installation.registered" in page.text
    assert again.status_code == 303 and 'data-status="pending"' in after.text
    assert foreign.status_code == 404


async def test_staff_see_every_resellers_failed_deliveries_and_the_signing_keys(hooked: Api) -> None:
    api = hooked
    reseller = await api.reseller("Okhrana")
    endpoint = await api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, headers=reseller["headers"])
    assert endpoint.status_code == 201, endpoint.text
    await api.installation("SHOP-1", headers=reseller["headers"], purchased_on=TODAY)
    await webhooks.dispatch(driver=api.driver, now=api.clock.now())
    async with api.engine.begin() as connection:
        await connection.execute(text("UPDATE webhook_deliveries SET status = 'failed', attempts = 15"))
    kids = [key["kid"] for key in (await api.get("/.well-known/jwks.json")).json()["keys"]]
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor, Visitor.of(api) as seller:
        await signed_in_user(api, visitor, "boss")
        failed = await visitor.get("/cabinet/deliveries")
        keys_page = await visitor.get("/cabinet/signing-keys")
        await signed_in_user(api, seller, "anna", "reseller", reseller["id"])
        refused = await seller.get("/cabinet/deliveries")

    assert "http://127.0.0.1:9/hook" in failed.text and "Okhrana" in failed.text
    assert "installation.registered" in failed.text
    assert kids and all(kid in keys_page.text for kid in kids) and "rotate-signing-key --root-key" in keys_page.text
    assert refused.status_code == 403


async def test_staff_prepare_a_rotation_see_its_request_and_a_certificate_that_is_none_is_a_form_error(
    api: Api,
) -> None:
    """The page flow's edges (the whole flow, with the root's holder, is tests/test_cabinet_signing_keys_browser.py):
    a reseller's user may not touch it, a pasted text that is no certificate is said under the form, and a discarded
    key is gone."""
    reseller = await api.reseller("Okhrana")
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor, Visitor.of(api) as seller:
        await signed_in_user(api, visitor, "boss")
        await visitor.get("/cabinet/signing-keys")
        prepared = await visitor.post("/cabinet/signing-keys/prepare", {})
        page = await visitor.get("/cabinet/signing-keys")
        kid = re.search(r'id="pending" data-kid="([^"]+)"', page.text).group(1)
        request = await visitor.get("/cabinet/signing-keys/request.csr")
        empty = await visitor.post("/cabinet/signing-keys/publish", {"kid": kid, "certificate": ""})
        refused = await visitor.post("/cabinet/signing-keys/publish", {"kid": kid, "certificate": "not a certificate"})
        await signed_in_user(api, seller, "anna", "reseller", reseller["id"])
        await seller.get("/cabinet/")
        by_seller = await seller.post("/cabinet/signing-keys/discard", {"kid": kid})
        kept = await signing_keys.pending(driver=api.driver)
        discarded = await visitor.post("/cabinet/signing-keys/discard", {"kid": kid})
        gone = await visitor.get("/cabinet/signing-keys/request.csr")
        audit = await visitor.get("/cabinet/audit")
        jwks = (await api.get("/.well-known/jwks.json")).json()

    assert prepared.status_code == 303
    assert kept is not None and kept.kid == kid and request.text == kept.request_pem
    assert "-----BEGIN CERTIFICATE REQUEST-----" in page.text and kid in page.text
    assert request.headers["content-type"] == "application/pkcs10"
    assert empty.status_code == 422 and "Paste the certificate" in empty.text
    assert refused.status_code == 422 and 'aria-invalid="true"' in refused.text
    assert "not an X.509 certificate" in refused.text and "not a certificate</textarea>" in refused.text
    assert by_seller.status_code == 403
    assert discarded.status_code == 303 and gone.status_code == 404
    assert "signing_key.prepared" in audit.text and "signing_key.discarded" in audit.text
    assert kid not in {key["kid"] for key in jwks["keys"]}


async def test_a_signing_key_given_in_the_settings_is_not_rotated_from_the_page(database_url: str) -> None:
    settings = make_settings(database_url, certificate_private_key=generate_private_key())
    async with service(settings) as api, Visitor.of(api, **{"Accept-Language": "en"}) as visitor:
        await signed_in_user(api, visitor, "boss")
        page = await visitor.get("/cabinet/signing-keys")
        refused = await visitor.post("/cabinet/signing-keys/prepare", {})
        pending = await signing_keys.pending(driver=api.driver)

    assert "CERTIFICATE_PRIVATE_KEY" in page.text and 'id="prepare"' not in page.text
    assert refused.status_code == 400 and "CERTIFICATE_PRIVATE_KEY" in refused.text
    assert pending is None


async def test_a_burst_of_wrong_passwords_at_once_gets_no_more_than_the_limit_through(api: Api) -> None:
    user = await invite(api, "boss")
    async with Visitor.of(api) as visitor:
        await visitor.set_password(user["setup_url"], PASSWORD)
        await visitor.get("/cabinet/login")
        form = {"username": "boss", "password": "wrong password", "csrf_token": visitor.csrf}
        answers = await asyncio.gather(
            *(
                visitor.client.post("/cabinet/login", data=form, headers={"Sec-Fetch-Site": "same-origin"})
                for _ in range(25)
            )
        )
        after = await visitor.sign_in("boss", PASSWORD)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 10 + [429] * 15  # the limit's places are taken before any password is hashed
    assert after.status_code == 429


async def test_signing_in_again_clears_the_users_sessions_that_ended_unseen(api: Api) -> None:
    async with Visitor.of(api) as first:
        await signed_in_user(api, first, "boss")
    api.shift_instants(timedelta(hours=13))
    async with Visitor.of(api) as second:
        assert (await second.sign_in("boss", PASSWORD)).status_code == 303
    async with api.engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM cabinet_sessions"))).scalar_one()
    assert count == 1


async def test_staff_see_every_resellers_renewals_by_the_resellers_name(api: Api) -> None:
    reseller = await api.reseller("Okhrana")
    await api.installation("SOON-1", reseller_id=reseller["id"], support_end=TODAY + timedelta(days=10))
    await api.installation("OWN-1", support_end=TODAY + timedelta(days=11))
    async with Visitor.of(api, **{"Accept-Language": "en"}) as visitor:
        await signed_in_user(api, visitor, "boss")
        page = (await visitor.get("/cabinet/")).text
        found = (await visitor.get("/cabinet/installations?code=soon")).text

    soon = page[page.index('data-code="SOON-1"') : page.index('data-code="OWN-1"')]
    assert "Okhrana" in soon and "Smartec's own" in page[page.index('data-code="OWN-1"') :]
    assert "SOON-1" in found and "OWN-1" not in found and "Okhrana" in found


async def test_the_keys_form_posted_again_answers_the_keys_it_issued_and_issues_no_more(api: Api) -> None:
    reseller = await api.reseller()
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", reseller["id"])
        form = await visitor.get("/cabinet/keys")
        form_id = re.search(r'name="form_id" value="([^"]+)"', form.text).group(1)
        first = await visitor.post("/cabinet/keys", {"count": "3", "form_id": form_id})
        again = await visitor.post("/cabinet/keys", {"count": "3", "form_id": form_id})
        changed = await visitor.post("/cabinet/keys", {"count": "4", "form_id": form_id})

    shown = re.findall(r"<li><code>(TXS-[^<]+)</code></li>", first.text)
    ISSUED_KEYS.update(shown)
    assert len(shown) == 3 and re.findall(r"<li><code>(TXS-[^<]+)</code></li>", again.text) == shown
    assert changed.status_code == 422  # the same form id with another count: refused, nothing issued
    assert len(await api.key_statuses()) == 3


async def test_staff_give_a_user_a_new_setup_link_when_the_first_expired(api: Api) -> None:
    expired = await invite(api, "anna")
    api.shift_instants(timedelta(hours=73))
    async with Visitor.of(api) as staff, Visitor.of(api) as anna:
        await signed_in_user(api, staff, "boss")
        await staff.get("/cabinet/users")
        renewed = await staff.post(f"/cabinet/users/{expired['id']}/setup-link", {})
        link = re.search(r'<code id="setup-link">([^<]+)</code>', renewed.text).group(1)
        old = await anna.get(httpx.URL(expired["setup_url"]).path)
        new = await anna.set_password(link, PASSWORD)
        signed_in = await anna.sign_in("anna", PASSWORD)
    assert (old.status_code, new.status_code, signed_in.status_code) == (404, 303, 303)
    actions = [e["action"] for e in (await api.get("/v1/audit-events", headers=api.admin)).json()["items"]]
    assert "user.setup_link_renewed" in actions


@asynccontextmanager
async def _schema_changed(api: Api, change: list[str], undo: list[str]) -> AsyncIterator[None]:
    """The schema changed for a while (a constraint or a trigger refusing what the test needs refused), then back."""
    await _run(api, change)
    try:
        yield
    finally:
        await _run(api, undo)


async def _run(api: Api, statements: list[str]) -> None:
    async with api.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def test_an_action_whose_audit_entry_cannot_be_written_is_not_taken(hooked: Api) -> None:
    api = hooked
    reseller = await api.reseller("Okhrana")
    endpoint = await api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, headers=reseller["headers"])
    await api.installation("ACME-1", purchased_on=date(2025, 12, 1))
    [activation] = await _activations(api, "ACME-1", 1)
    await api.keys(1, reseller_id=reseller["id"])
    [key_id] = [key for key, status in (await api.key_statuses()).items() if status == "issued"]
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        await visitor.get("/cabinet/")
        sign_ins_only = (
            "ALTER TABLE audit_events ADD CONSTRAINT test_sign_ins_only CHECK (action LIKE 'session.%') NOT VALID"
        )
        async with _schema_changed(
            api, [sign_ins_only], ["ALTER TABLE audit_events DROP CONSTRAINT test_sign_ins_only"]
        ):
            posts = {
                "/cabinet/sales": {"code": "SHOP-1", "purchased_on": TODAY.isoformat(), "reseller_id": reseller["id"]},
                "/cabinet/keys": {"count": "2"},
                f"/cabinet/keys/{key_id}/revoke": {},
                f"/cabinet/installations/ACME-1/void/{activation}": {"reason": "Refund"},
                "/cabinet/resellers": {"name": "Never"},
                f"/cabinet/resellers/{reseller['id']}/rotate-secret": {},
                f"/cabinet/resellers/{reseller['id']}/disable": {},
                "/cabinet/webhooks": {"url": "http://127.0.0.1:9/other"},
                f"/cabinet/webhooks/{endpoint.json()['id']}/disable": {},
            }
            answers = {path: (await visitor.post(path, form)).status_code for path, form in posts.items()}

    assert answers == dict.fromkeys(posts, 500)
    assert (await api.get("/v1/installations/SHOP-1", headers=api.admin)).status_code == 404
    assert (await api.key_statuses())[key_id] == "issued" and len(await api.key_statuses()) == 2
    ledger = (await api.get("/v1/installations/ACME-1", headers=api.admin)).json()
    assert ledger["activations"][0]["voided_at"] is None
    resellers = (await api.get("/v1/resellers", headers=api.admin)).json()["items"]
    assert [(r["name"], r["disabled_at"]) for r in resellers] == [("Okhrana", None)]
    assert (await api.get("/v1/keys", headers=reseller["headers"])).status_code == 200  # its secret not rotated
    endpoints = (await api.get("/v1/webhook-endpoints", headers=api.admin)).json()["items"]
    assert [(e["url"], e["disabled_at"]) for e in endpoints] == [("http://127.0.0.1:9/hook", None)]


async def test_an_action_that_fails_as_it_commits_leaves_no_audit_entry(api: Api) -> None:
    # A deferred trigger refuses a new reseller as its transaction commits: after the audit entry was written.
    refuse = [
        "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'refused'; END $$",
        "CREATE CONSTRAINT TRIGGER test_refuse AFTER INSERT ON resellers DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION test_refuse()",
    ]
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        await visitor.get("/cabinet/resellers")
        async with _schema_changed(api, refuse, ["DROP TRIGGER test_refuse ON resellers", "DROP FUNCTION test_refuse"]):
            refused = await visitor.post("/cabinet/resellers", {"name": "Okhrana LLC"})

    assert refused.status_code == 500
    assert (await api.get("/v1/resellers", headers=api.admin)).json()["items"] == []
    actions = [e["action"] for e in (await api.get("/v1/audit-events", headers=api.admin)).json()["items"]]
    assert "reseller.created" not in actions


async def test_the_webhooks_page_lists_every_endpoint_a_page_at_a_time(api: Api) -> None:
    urls = [f"https://hooks.example.com/{number}" for number in range(101)]
    for url in urls:
        await webhooks.create_endpoint(
            driver=api.driver,
            principal=Principal(role="admin", subject="test-admin"),
            url=url,
            event_types=None,
            reseller_id=None,
            allowed_hosts=webhooks.AllowedHosts([]),
        )
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "boss")
        first = await visitor.get("/cabinet/webhooks")
        following = re.search(r'<a href="(/cabinet/webhooks\?cursor=[^"]+)"', first.text).group(1)
        second = await visitor.get(html.unescape(following))

    listed = re.findall(r'<a href="/cabinet/webhooks/[0-9a-f-]+">([^<]+)</a>', first.text + second.text)
    assert listed == urls
    assert "?cursor=" not in second.text
