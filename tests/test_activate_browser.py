"""A customer activates in a real browser: headless Chromium against a real service process, with every host
but the service's unreachable. The customer types the installation code and two keys, one with a typo, is told
which key is wrong, corrects it, activates, and the certificate that downloads verifies against the service's
JWKS. In Russian, and in English after choosing it; on a phone's screen as well."""

import base64
import os
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from jose import jwk, jwt

from service import rules
from service.auth import TokenSettings, issue_token
from service.clock import Clock
from service.i18n import long_date
from service.settings import Settings
from tests.api import ISSUED_KEYS
from tests.cdp import Page, chromium_page
from tests.conftest import migrated_database
from tests.servers import running_server
from tests.test_pages import typo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="no chromium here (CI installs it and runs this test)"
)

# Every name resolves to nowhere but the service's own address: a font, script or style from the internet fails.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
DESKTOP = {"width": 1000, "height": 1300, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
SCREENSHOTS = os.environ.get("SCREENSHOTS")
"""A folder to keep the screenshots in (the README's are made so: `SCREENSHOTS=service/docs pytest -k browser`)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("activate")
    with migrated_database() as database, running_server({**os.environ, "DATABASE_URL": database}, cwd=folder) as url:
        yield url


def _today():
    return Clock(ZoneInfo(Settings(_env_file=None).business_timezone)).today()


def _arrange(server: str, code: str) -> list[str]:
    """An installation bought today and two keys, through the API as a reseller's admin would."""
    settings = Settings(_env_file=None)
    token = issue_token(TokenSettings.of(settings), "admin", "test", Clock(settings.zone).now(), timedelta(minutes=5))
    admin = {"Authorization": f"Bearer {token}"}
    registered = httpx.post(
        f"{server}/v1/installations", json={"code": code, "purchased_on": _today().isoformat()}, headers=admin
    )
    assert registered.status_code == 201, registered.text
    issued = httpx.post(f"{server}/v1/keys", json={"count": 2}, headers=admin)
    keys = [k["key"] for k in issued.json()["keys"]]
    ISSUED_KEYS.update(keys)
    return keys


def _wait(page: Page, condition: str, timeout: float = 30) -> object:
    """Poll a JavaScript expression until it is truthy: across the navigation a form's submission makes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = page.evaluate(condition)
        except RuntimeError:  # the page was between documents
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never true: {condition}")


def _submit(page: Page, code: str | None, keys: str, action: str = "activate") -> None:
    marker = page.evaluate("document.body.dataset.seen = 'before'")
    assert marker == "before"
    fill = f"document.querySelector('#code').value = {code!r};" if code is not None else ""
    page.evaluate(
        f"""{fill}
        document.querySelector('#keys').value = {keys!r};
        document.querySelector('button[value={action}]').click();"""
    )
    _wait(page, "document.readyState === 'complete' && document.body && !document.body.dataset.seen")


def _verify(server: str, certificate: str) -> dict:
    jwks = httpx.get(f"{server}/.well-known/jwks.json").json()
    [key] = [k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(certificate)["kid"]]
    return jwt.decode(certificate, jwk.construct(key), algorithms=["ES256"])


def _downloaded(folder: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = [f for f in folder.iterdir() if not f.name.endswith(".crdownload")]
        if files:
            return files[0].read_text()
        time.sleep(0.1)
    raise AssertionError("no certificate was downloaded")


def _screenshot(page: Page, name: str, folder: Path) -> None:
    shot = base64.b64decode(page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    assert len(shot) > 10_000
    (folder / name).write_bytes(shot)
    if SCREENSHOTS:
        (Path(SCREENSHOTS) / name).write_bytes(shot)


LANGUAGES = {
    "ru": {
        "typo": "Это не ключ поддержки Timex: проверьте, нет ли опечатки.",
        "activated": "Теперь поддержка действует до {end}",
        "title": "Активация поддержки Timex",
    },
    "en": {
        "typo": "This is not a Timex Support key: check it for a typo.",
        "activated": "Support now runs until {end}.",
        "title": "Activate Timex Support",
    },
}


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_customer_corrects_a_typo_activates_and_gets_a_certificate_that_verifies(
    server: str, language: str, tmp_path: Path
) -> None:
    code = f"SHOP-{language.upper()}"
    first, second = _arrange(server, code)
    expected = LANGUAGES[language]
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    with chromium_page(CHROMIUM, OFFLINE) as page:
        page.send("Emulation.setDeviceMetricsOverride", **DESKTOP)
        # A Russian customer's browser: the page follows its language until the customer picks the other.
        user_agent = page.evaluate("navigator.userAgent")
        page.send("Emulation.setUserAgentOverride", userAgent=user_agent, acceptLanguage="ru-RU,ru")
        page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        page.send("Page.navigate", url=f"{server}/activate")
        _wait(page, "document.readyState === 'complete' && !!document.querySelector('#code')")
        if language == "en":  # the customer chooses English
            page.evaluate("document.querySelector('nav a[hreflang=en]').click()")
            _wait(page, "document.documentElement.lang === 'en' && document.readyState === 'complete'")
        assert page.evaluate("document.querySelector('h1').textContent") == expected["title"]

        _submit(page, code.lower(), f"{first}\n{typo(second)}")
        refused = page.evaluate("[...document.querySelectorAll('#keys-status li.bad')].map(li => li.textContent)")
        accepted = page.evaluate("[...document.querySelectorAll('#keys-status li.good')].map(li => li.textContent)")
        _screenshot(page, f"activate-page-{language}.png", tmp_path)

        _submit(page, None, f"{first} {second}")
        result = page.evaluate("document.querySelector('main').innerText")
        certificate = _downloaded(downloads)

    assert refused == [f"{typo(second)} — {expected['typo']}"]
    assert len(accepted) == 1 and accepted[0].startswith(first)
    support_end = rules.renew(rules.purchase(_today(), _today()), 2, _today()).after.end
    assert expected["activated"].format(end=long_date(support_end, language)) in result
    claims = _verify(server, certificate)
    assert (claims["sub"], claims["support_end"]) == (code, support_end.isoformat())


def test_the_page_loads_with_no_network_but_the_service_and_fits_a_phone(server: str, tmp_path: Path) -> None:
    with chromium_page(CHROMIUM, OFFLINE) as page:
        page.send("Emulation.setDeviceMetricsOverride", **PHONE)
        page.send("Page.navigate", url=f"{server}/activate")
        _wait(page, "document.readyState === 'complete' && !!document.querySelector('#code')")
        styled = page.evaluate("getComputedStyle(document.querySelector('button.primary')).backgroundColor")
        fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        labelled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), textarea')].every(f => f.labels.length === 1)"
        )
        resources = page.evaluate("performance.getEntriesByType('resource').map(r => r.name)")
        scripts = page.evaluate("document.scripts.length")
        _screenshot(page, "activate-page-phone.png", tmp_path)

    assert styled == "rgb(11, 87, 208)"  # the page's own stylesheet, served by the service, applied
    assert fits and labelled and scripts == 0
    assert resources and all(name.startswith(server) for name in resources)
