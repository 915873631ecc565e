"""What a browser shows, in headless Chromium against a real service process: `/activate` in the browser's
language until the page's own choice, the docs pages on a phone without scrolling sideways, the pages' favicon,
and Swagger UI keeping nothing of a reseller's credentials in the browser."""

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.cdp import Page, chromium_page
from tests.conftest import migrated_database
from tests.servers import running_server
from tests.test_activate_browser import OFFLINE, PHONE, _wait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="no chromium here (CI installs it and runs this test)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("pages")
    with migrated_database() as database, running_server({**os.environ, "DATABASE_URL": database}, cwd=folder) as url:
        yield url


def _open(page: Page, url: str, ready: str = "true") -> None:
    page.send("Page.navigate", url=url)
    _wait(page, f"document.readyState === 'complete' && ({ready})")


def test_an_english_browser_gets_activate_in_english_until_it_chooses_russian(server: str) -> None:
    with chromium_page(CHROMIUM, OFFLINE) as page:
        user_agent = page.evaluate("navigator.userAgent")
        page.send("Emulation.setUserAgentOverride", userAgent=user_agent, acceptLanguage="en-US,en")
        _open(page, f"{server}/activate", "!!document.querySelector('#code')")
        first = page.evaluate("[document.documentElement.lang, document.querySelector('h1').textContent]")
        page.evaluate("document.querySelector('header nav a').click()")
        _wait(page, "document.documentElement.lang === 'ru' && document.readyState === 'complete'")
        chosen = page.evaluate("document.querySelector('h1').textContent")
        icon = page.evaluate(
            """new Promise((resolve) => {
                 const image = new Image();
                 image.onload = () => resolve(image.naturalWidth > 0);
                 image.onerror = () => resolve(false);
                 image.src = document.querySelector('link[rel=icon]').href;
               })"""
        )

    assert first == ["en", "Activate Timex Support"]
    assert chosen == "Активация поддержки Timex"
    assert icon is True


@pytest.mark.parametrize("path", ["/docs/errors", "/docs/rules", "/docs/contract"])
def test_the_docs_pages_fit_a_phone_without_scrolling_sideways(server: str, path: str) -> None:
    with chromium_page(CHROMIUM, OFFLINE) as page:
        page.send("Emulation.setDeviceMetricsOverride", **PHONE)
        _open(page, f"{server}{path}", "!!document.querySelector('main')")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")

    assert isinstance(widths, list) and widths[0] <= widths[1] == PHONE["width"], widths


def test_swagger_ui_keeps_no_credentials_in_the_browser(server: str) -> None:
    with chromium_page(CHROMIUM, OFFLINE) as page:
        _open(page, f"{server}/docs", "!!document.querySelector('.btn.authorize')")
        # What the Authorize dialog's button does.
        page.evaluate(
            """ui.authActions.authorizeWithPersistOption({HTTPBearer: {
                 name: 'HTTPBearer', schema: {type: 'http', scheme: 'bearer'}, value: 'a-reseller-token'}})"""
        )
        authorized = page.evaluate("JSON.stringify(ui.authSelectors.authorized().toJS())")
        kept = page.evaluate("JSON.stringify(Object.assign({}, localStorage))")

    assert "a-reseller-token" in str(authorized)
    assert "a-reseller-token" not in str(kept)
