"""The cabinet in a real browser: headless Chromium against a real service process, every host but the service's
unreachable, in Russian and in English. The first admin, made by the CLI, sets a password, signs in, creates a
reseller, moves one of its existing customers in and invites its user; that user signs in, registers a sale,
issues 3 keys and downloads them as CSV, finds the customer inside the bonus window on Renewals with the day the
bonus is lost, and prints a quote. A post without its CSRF token is refused; a disabled user's open session is
refused at once; ten wrong passwords limit that address and username only; the audit log shows it all, by user.
No page loads anything from elsewhere, or any script. Where admins must sign in in two steps, staff reset the
two-step sign-in of an admin who lost its phone, which then sets it up again."""

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service import rules, totp
from service.auth import TokenSettings, issue_token
from service.clock import Clock
from service.i18n import long_date
from service.settings import Settings
from tests.api import ISSUED_KEYS
from tests.cdp import Page, chromium_page
from tests.conftest import migrated_database
from tests.servers import running_server
from tests.test_activate_browser import CHROMIUM, DESKTOP, OFFLINE, PHONE, _downloaded, _screenshot, _wait

pytestmark = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="no chromium here (CI installs it and runs this test)"
)
PASSWORD = "a long enough pass phrase"


@contextmanager
def _serving(folder: Path, **settings: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A service process on a database of its own, with `settings`: its URL, and the environment its CLI needs."""
    with migrated_database() as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, **settings}
        with running_server(env, cwd=folder) as url:
            yield url, {**env, "CABINET_URL": url}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    with _serving(tmp_path_factory.mktemp("cabinet")) as served:
        yield served


def _today():
    return Clock(Settings(_env_file=None).zone).today()


def _admin_token() -> dict[str, str]:
    settings = Settings(_env_file=None)
    token = issue_token(TokenSettings.of(settings), "admin", "ops", Clock(settings.zone).now(), timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def _create_admin(env: dict[str, str], username: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "create-user", "--role", "admin", "--username", username],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _more_customers(url: str, reseller_id: str, language: str) -> dict[str, rules.Support]:
    """More of the reseller's customers, moved in through the API: one more ending soon, two lapsed."""
    today, moved = _today(), {}
    for code, days in (("SKLAD", 45), ("OFIS", -200), ("ZAVOD", -500)):
        end = today + timedelta(days=days)
        body = {"code": f"{code}-{language.upper()}", "support_end": end.isoformat(), "reseller_id": reseller_id}
        assert httpx.post(f"{url}/v1/installations", json=body, headers=_admin_token()).status_code == 201
        moved[body["code"]] = rules.existing_customer(end)
    return moved


def _go(page: Page, url: str) -> None:
    page.send("Page.navigate", url=url)
    _wait(page, "document.readyState === 'complete' && !!document.querySelector('main')")


def _act(page: Page, script: str) -> None:
    """Run `script` (which submits a form or follows a link) and wait for the next page."""
    assert page.evaluate("document.body.dataset.seen = 'before'") == "before"
    page.evaluate(script)
    _wait(page, "document.readyState === 'complete' && document.body && !document.body.dataset.seen")


def _fill(page: Page, form: str, values: dict[str, str], submit: str = "button[type=submit]") -> None:
    assignments = "".join(
        f"document.querySelector({form!r}).querySelector('[name={name}]').value = {value!r};"
        for name, value in values.items()
    )
    _act(page, f"{assignments} document.querySelector({form!r}).querySelector({submit!r}).click();")


def _text(page: Page, selector: str = "main") -> str:
    return str(page.evaluate(f"document.querySelector({selector!r})?.innerText ?? ''"))


def _sign_in(page: Page, server: str, username: str, password: str) -> None:
    _go(page, f"{server}/cabinet/login")
    _fill(page, "form[action='/cabinet/login']", {"username": username, "password": password})


def _sign_out(page: Page) -> None:
    _act(page, "document.querySelector('form.signout button').click()")


def _loaded_only_from(page: Page, server: str) -> None:
    resources = page.evaluate("performance.getEntriesByType('resource').map(r => r.name)")
    assert isinstance(resources, list)
    assert all(str(name).startswith(server) for name in resources), resources
    assert page.evaluate("document.scripts.length") == 0


def _audit_entries(page: Page, server: str) -> list[tuple[str, str]]:
    _go(page, f"{server}/cabinet/audit")
    entries = page.evaluate(
        "[...document.querySelectorAll('#audit tbody tr')].map(r => [r.dataset.actor, r.dataset.action])"
    )
    assert isinstance(entries, list)
    return [(str(actor), str(action)) for actor, action in entries]


WORDS = {
    "ru": {"accept": "ru-RU,ru;q=0.9", "renewals": "Продления", "limited": "Слишком много", "refused": "Неверное"},
    "en": {"accept": "en-US,en;q=0.9", "renewals": "Renewals", "limited": "Too many", "refused": "Wrong"},
}


@pytest.mark.parametrize("language", ["ru", "en"])
def test_the_first_admin_sets_up_a_reseller_whose_user_sells_issues_keys_and_quotes_a_renewal(
    server: tuple[str, dict[str, str]], language: str, tmp_path: Path
) -> None:
    url, env = server
    words = WORDS[language]
    admin, seller = f"boss-{language}", f"anna-{language}"
    legacy, sale = f"LEGACY-{language.upper()}", f"SHOP-{language.upper()}"
    today = _today()
    legacy_end = today + timedelta(days=20)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    setup_link = _create_admin(env, admin)
    assert setup_link.startswith(f"{url}/cabinet/setup/")

    with chromium_page(CHROMIUM, OFFLINE) as page:
        page.send("Network.enable")
        page.send("Network.setUserAgentOverride", userAgent="Chromium test", acceptLanguage=words["accept"])
        page.send("Emulation.setDeviceMetricsOverride", **DESKTOP)
        page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))

        # The first admin sets a password at the CLI's link and signs in.
        _go(page, setup_link)
        assert page.evaluate("document.documentElement.lang") == language
        _fill(page, "main form", {"password": PASSWORD, "password_confirmation": PASSWORD})
        assert page.evaluate("!!document.querySelector('#password-set')")
        _fill(page, "form[action='/cabinet/login']", {"username": admin, "password": PASSWORD})
        assert page.evaluate("document.querySelector('h1').textContent") == words["renewals"]
        _loaded_only_from(page, url)

        # It creates a reseller, moves one of its customers in (support ending in 20 days), invites its user.
        _go(page, f"{url}/cabinet/resellers")
        _fill(page, "#new-reseller", {"name": f"Okhrana {language}"})
        assert page.evaluate("!!document.querySelector('#client-secret')")
        _act(page, "document.querySelector('main a.button').click()")
        reseller_id = page.evaluate("location.pathname.split('/').pop()")
        _go(page, f"{url}/cabinet/sales")
        _fill(
            page,
            "main form",
            {
                "code": legacy,
                "purchased_on": "",
                "support_end": legacy_end.isoformat(),
                "reseller_id": str(reseller_id),
            },
        )
        assert page.evaluate("location.pathname") == f"/cabinet/installations/{legacy}"
        moved = _more_customers(url, str(reseller_id), language)
        _go(page, f"{url}/cabinet/users?reseller_id={reseller_id}")
        _fill(page, "#invite", {"username": seller})
        user_link = _text(page, "#setup-link")
        _sign_out(page)

        # Its user sets a password, signs in, registers a sale and issues 3 keys.
        _go(page, user_link)
        _fill(page, "main form", {"password": PASSWORD, "password_confirmation": PASSWORD})
        _fill(page, "form[action='/cabinet/login']", {"username": seller, "password": PASSWORD})
        _go(page, f"{url}/cabinet/sales")
        _fill(page, "main form", {"code": sale.lower(), "purchased_on": today.isoformat()})
        assert page.evaluate("location.pathname") == f"/cabinet/installations/{sale}"
        _go(page, f"{url}/cabinet/keys")
        _fill(page, "#issue", {"count": "3"})
        shown = page.evaluate("[...document.querySelectorAll('#issued code')].map(c => c.textContent)")
        assert isinstance(shown, list) and len(shown) == 3
        ISSUED_KEYS.update(str(key) for key in shown)
        page.evaluate("document.querySelector('#csv button').click()")
        rows = list(csv.DictReader(io.StringIO(_downloaded(downloads))))
        assert [row["key"] for row in rows] == shown

        # Renewals: the moved-in customer, inside the bonus window, with the day the bonus is lost.
        _go(page, f"{url}/cabinet/")
        row = _text(page, f"#expiring tr[data-code='{legacy}']")
        lost = rules.bonus_lost_on(rules.existing_customer(legacy_end))
        assert long_date(lost, language) in _text(page, f"#expiring tr[data-code='{legacy}'] .bonus-lost"), row
        for code, support in moved.items():
            quote = rules.quote(support, today, Settings(_env_file=None).unit_price_minor)
            section = "#lapsed" if not quote.active else "#expiring"
            assert page.evaluate(f"!!document.querySelector(\"{section} tr[data-code='{code}']\")"), code
        _loaded_only_from(page, url)
        if language == "ru":
            _screenshot(page, "cabinet-renewals.png", tmp_path)

        # The printable quote: only the quote is printed.
        _act(page, f"document.querySelector(\"#expiring tr[data-code='{legacy}'] a.button\").click()")
        page.send("Emulation.setEmulatedMedia", media="print")
        printed = page.evaluate(
            "[getComputedStyle(document.querySelector('nav.sections')).display,"
            " getComputedStyle(document.querySelector('#quote')).display]"
        )
        pdf = page.send("Page.printToPDF")["data"]
        page.send("Emulation.setEmulatedMedia", media="")
        assert printed == ["none", "block"] and len(pdf) > 1000
        _loaded_only_from(page, url)

        # The sale's page, once its customer activated a key: on a desktop and on a phone.
        activated = httpx.post(f"{url}/v1/activations", json={"installation": sale, "keys": [shown[0]]})
        assert activated.status_code in (200, 201), activated.text
        _go(page, f"{url}/cabinet/installations/{sale}")
        assert sale in _text(page, "h1") and page.evaluate("document.querySelectorAll('#ledger tbody tr').length") == 1
        if language == "ru":
            _screenshot(page, "cabinet-installation.png", tmp_path)
            page.send("Emulation.setDeviceMetricsOverride", **PHONE)
            _go(page, f"{url}/cabinet/installations/{sale}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            _screenshot(page, "cabinet-installation-phone.png", tmp_path)
            _go(page, f"{url}/cabinet/")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            _screenshot(page, "cabinet-renewals-phone.png", tmp_path)
            page.send("Emulation.setDeviceMetricsOverride", **DESKTOP)

        # A post without its CSRF token is refused, and issues nothing.
        _go(page, f"{url}/cabinet/keys")
        _act(
            page,
            "document.querySelector('#issue [name=csrf_token]').remove();"
            " document.querySelector('#issue button').click()",
        )
        refused_post = page.evaluate("document.title")
        _go(page, f"{url}/cabinet/keys")
        listed = page.evaluate("document.querySelectorAll('#key-list tbody tr').length")
        assert listed == 3, refused_post

        # A disabled user's open session is refused at once.
        users = httpx.get(f"{url}/v1/users", headers=_admin_token()).json()["items"]
        [user_id] = [u["id"] for u in users if u["username"] == seller]
        assert httpx.post(f"{url}/v1/users/{user_id}/disable", headers=_admin_token()).status_code == 200
        _go(page, f"{url}/cabinet/keys")
        assert page.evaluate("location.pathname") == "/cabinet/login"
        assert httpx.post(f"{url}/v1/users/{user_id}/enable", headers=_admin_token()).status_code == 200

        # Ten wrong passwords limit that address and username; the admin from the same address signs in.
        for _ in range(10):
            _sign_in(page, url, seller, "not the password at all")
            assert words["refused"] in _text(page, "#refusal")
        _sign_in(page, url, seller, PASSWORD)
        assert words["limited"] in _text(page, "#refusal")
        _sign_in(page, url, admin, PASSWORD)
        assert page.evaluate("location.pathname") == "/cabinet/"

        # The audit log shows each of those actions with its user.
        seen = set(_audit_entries(page, url))
        _loaded_only_from(page, url)

    expected = [
        (admin, "user.password_set"),
        (admin, "session.signed_in"),
        (admin, "reseller.created"),
        (admin, "installation.registered"),
        (admin, "user.invited"),
        (admin, "session.signed_out"),
        (seller, "user.password_set"),
        (seller, "session.signed_in"),
        (seller, "installation.registered"),
        (seller, "keys.issued"),
        (seller, "keys.downloaded"),
        (seller, "quote.opened"),
        ("token:ops", "user.disabled"),
        ("token:ops", "user.enabled"),
        (seller, "session.refused"),
    ]
    assert [entry for entry in expected if entry not in seen] == []


def _set_up_totp(page: Page) -> None:
    """On the page that sets two-step sign-in up: the key typed into the app, and the code it shows typed back."""
    secret = totp.secret_of(_text(page, "#totp-secret"))
    _fill(page, "#totp", {"code": totp.code_at(secret, totp.step_of(datetime.now(UTC)))})
    assert page.evaluate("!!document.querySelector('#totp-enabled')")


def test_staff_reset_the_two_step_sign_in_of_an_admin_who_lost_its_phone_which_sets_it_up_again(
    tmp_path: Path,
) -> None:
    with _serving(tmp_path, CABINET_ADMIN_TOTP="true") as (url, env):
        links = {"boss": _create_admin(env, "boss"), "ops": _create_admin(env, "ops")}
        with chromium_page(CHROMIUM, OFFLINE) as staff, chromium_page(CHROMIUM, OFFLINE) as ops:
            # Both admins set a password, sign in, and are sent to set up two-step sign-in before anything else.
            for page, username in ((staff, "boss"), (ops, "ops")):
                page.send("Emulation.setDeviceMetricsOverride", **DESKTOP)
                _go(page, links[username])
                _fill(page, "main form", {"password": PASSWORD, "password_confirmation": PASSWORD})
                _fill(page, "form[action='/cabinet/login']", {"username": username, "password": PASSWORD})
                assert page.evaluate("location.pathname") == "/cabinet/totp"
                _set_up_totp(page)

            # ops lost its phone: boss resets its two-step sign-in on the Users page.
            _go(staff, f"{url}/cabinet/users")
            assert not staff.evaluate("!!document.querySelector(\"tr[data-username='boss'] form.reset-totp\")")
            _act(staff, "document.querySelector(\"tr[data-username='ops'] form.reset-totp button\").click()")
            assert staff.evaluate("location.pathname") == "/cabinet/users"
            assert not staff.evaluate("!!document.querySelector(\"tr[data-username='ops'] form.reset-totp\")")
            _loaded_only_from(staff, url)

            # Its open session ended; it signs in with its password alone, and sets two-step sign-in up again first.
            _go(ops, f"{url}/cabinet/keys")
            assert ops.evaluate("location.pathname") == "/cabinet/login"
            _sign_in(ops, url, "ops", PASSWORD)
            assert ops.evaluate("location.pathname") == "/cabinet/totp"
            assert ops.evaluate("!!document.querySelector('#totp-required')")
            _go(ops, f"{url}/cabinet/keys")
            assert ops.evaluate("location.pathname") == "/cabinet/totp"
            _set_up_totp(ops)
            _go(ops, f"{url}/cabinet/keys")
            assert ops.evaluate("location.pathname") == "/cabinet/keys"

            entries = _audit_entries(staff, url)

    assert ("boss", "user.totp_reset") in entries
    assert entries.count(("ops", "user.totp_enabled")) == 2
