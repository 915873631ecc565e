"""The docs render in a real browser with no internet: headless Chromium opens /docs and /redoc
served by a real service process, and the operations are on the page, linked to the rules they cite."""

import json
import os
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from service.auth import TokenSettings, issue_token
from service.clock import Clock
from service.settings import Settings
from tests.cdp import FLAGS, chromium_page
from tests.conftest import migrated_database
from tests.servers import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="no chromium here (CI installs it and runs this test)"
)


def _render(url: str, *extra: str) -> str:
    # Chromium's helper processes may still write to the profile as the browser exits.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        result = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", *extra, url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("docs")
    with migrated_database() as database, running_server({**os.environ, "DATABASE_URL": database}, cwd=folder) as url:
        yield url


def test_swagger_ui_lists_every_operation_and_offers_authorize(server: str, tmp_path: Path) -> None:
    dom = _render(f"{server}/docs", "--dump-dom")

    for summary in (
        "Activate keys on an installation",
        "Support state",
        "What renewing an installation costs",
        "Issue keys",
        "Register an installation",
        "Get an access token",
    ):
        assert summary in dom
    assert 'class="btn authorize' in dom
    _render(f"{server}/docs", f"--screenshot={tmp_path / 'docs.png'}", "--window-size=1280,2000")
    assert (tmp_path / "docs.png").stat().st_size > 10_000


WAIT_FOR = """
async (selector) => {
  for (let i = 0; i < 200; i++) {
    const found = document.querySelector(selector);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("never appeared: " + selector);
}
"""

TYPE_INTO = """
(input, text) => {
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
  setter.call(input, text);
  input.dispatchEvent(new Event("input", {bubbles: true}));
}
"""


OPERATION = "#operations-keys-listKeys"


def test_authorize_with_a_bearer_token_then_call_an_admin_operation(server: str) -> None:
    """A person's way through Swagger UI: Authorize, paste a token, try `GET /v1/keys`, see 200."""
    token = issue_token(
        TokenSettings.of(Settings(_env_file=None)), "admin", "docs", Clock(ZoneInfo("UTC")).now(), timedelta(minutes=10)
    )
    with chromium_page(CHROMIUM) as page:
        page.send("Page.navigate", url=f"{server}/docs")
        status = page.evaluate(f"""(async () => {{
            const waitFor = {WAIT_FOR};
            const typeInto = {TYPE_INTO};
            (await waitFor(".btn.authorize")).click();
            typeInto(await waitFor(".auth-container input"), {json.dumps(token)});
            (await waitFor(".auth-btn-wrapper .btn.authorize")).click();
            (await waitFor(".auth-btn-wrapper .btn-done")).click();
            (await waitFor("{OPERATION} .opblock-summary-control")).click();
            (await waitFor("{OPERATION} .try-out__btn")).click();
            (await waitFor("{OPERATION} .execute")).click();
            const cell = await waitFor("{OPERATION} .live-responses-table tr.response .response-col_status");
            return cell.textContent.trim();
        }})()""")

    assert status == "200"


def test_authorize_with_a_resellers_client_credentials_fetches_the_token_itself(server: str) -> None:
    """The document's OAuth2 client credentials flow: Swagger UI's Authorize takes a reseller's client id and
    secret, fetches a token from `POST /v1/auth/token` (HTTP Basic, its default), and the call then carries it."""
    admin = issue_token(
        TokenSettings.of(Settings(_env_file=None)), "admin", "docs", Clock(ZoneInfo("UTC")).now(), timedelta(minutes=10)
    )
    reseller = httpx.post(
        f"{server}/v1/resellers", json={"name": "Docs Partner"}, headers={"Authorization": f"Bearer {admin}"}
    ).json()
    with chromium_page(CHROMIUM) as page:
        page.send("Page.navigate", url=f"{server}/docs")
        status = page.evaluate(f"""(async () => {{
            const waitFor = {WAIT_FOR};
            const typeInto = {TYPE_INTO};
            (await waitFor(".btn.authorize")).click();
            const clientId = await waitFor("input[id^='client_id_']");
            const form = clientId.closest(".auth-container");
            typeInto(clientId, {json.dumps(reseller["client_id"])});
            typeInto(form.querySelector("input[id^='client_secret_']"), {json.dumps(reseller["client_secret"])});
            form.querySelector(".auth-btn-wrapper .btn.authorize").click();
            for (let i = 0; i < 200 && !form.textContent.includes("Logout"); i++) {{
                await new Promise((resolve) => setTimeout(resolve, 100));
            }}
            form.querySelector(".btn-done").click();
            (await waitFor("{OPERATION} .opblock-summary-control")).click();
            (await waitFor("{OPERATION} .try-out__btn")).click();
            (await waitFor("{OPERATION} .execute")).click();
            const cell = await waitFor("{OPERATION} .live-responses-table tr.response .response-col_status");
            return cell.textContent.trim();
        }})()""")

    assert status == "200"


def test_redoc_renders_the_contract(server: str) -> None:
    dom = _render(f"{server}/redoc", "--dump-dom")

    assert "Activate keys on an installation" in dom and "/v1/activations" in dom


def test_the_rules_the_docs_cite_are_links_to_the_served_rules(server: str) -> None:
    redoc = _render(f"{server}/redoc", "--dump-dom")
    rules = _render(f"{server}/docs/rules#r4", "--dump-dom")

    assert 'href="/docs/rules#r4"' in redoc
    assert '<h3 id="r4">R4 — one license</h3>' in rules


@pytest.mark.parametrize(("page_url", "rendered"), [("/docs", ".opblock"), ("/redoc", ".api-content h2")])
def test_the_docs_reach_nothing_but_the_service(server: str, page_url: str, rendered: str) -> None:
    """In a closed network nothing else answers: every request the page makes, its scripts, styles, fonts and
    images, goes to the service; ReDoc's footer logo, on Redocly's CDN, is blocked by the page's
    Content-Security-Policy before it leaves the browser."""
    with chromium_page(CHROMIUM) as page:
        page.send("Network.enable")
        page.send("Page.navigate", url=f"{server}{page_url}")
        page.evaluate(f"({WAIT_FOR})({json.dumps(rendered)}).then(() => new Promise((r) => setTimeout(r, 1000)))")
        events = [(event["method"], event["params"]) for event in page.events]

    requested = {params["requestId"]: params["request"]["url"] for method, params in events if method.endswith("Sent")}
    blocked = {params["requestId"] for method, params in events if params.get("blockedReason") == "csp"}
    assert f"{server}/openapi.json" in requested.values()
    elsewhere = {url for request, url in requested.items() if not url.startswith((server, "data:", "blob:"))}
    assert elsewhere == {url for request, url in requested.items() if request in blocked}
    assert elsewhere <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
