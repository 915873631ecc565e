"""A signing key rotated from the cabinet, in a real browser, the root's private key never near the service: headless
Chromium against a real service process that holds only the root's certificate. An admin prepares a rotation on the
Signing keys page, the root's holder certifies the request it shows with `certify-signing-key` (no database), the
admin pastes a certificate by another root first (refused, said under the form, nothing published), then the right
one: the key is published at once and signs after the usual delay, and its certificates verify with the root. A
second rotation prepared is discarded. The audit log shows each step."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from jose import jwt

from service import trust, verification
from tests.cdp import Page, chromium_page
from tests.conftest import migrated_database
from tests.servers import running_server
from tests.test_activate_browser import CHROMIUM, DESKTOP, OFFLINE
from tests.test_cabinet_browser import PASSWORD, _act, _admin_token, _create_admin, _fill, _go, _loaded_only_from, _text

pytestmark = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="no chromium here (CI installs it and runs this test)"
)
INTERVALS = {"SIGNING_KEYS_RELOAD_SECONDS": "1", "JWKS_MAX_AGE_SECONDS": "1"}
"""The service's and the root holder's: a new key signs 2 s after its publication."""


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The deployment's root and another one, each a folder of root.pem and root-key.pem, kept away from the
    service."""
    folder = tmp_path_factory.mktemp("roots")
    for name in ("root", "other"):
        _cli(dict(os.environ), "init-root", "--out", str(folder / name))
    return {name: folder / name for name in ("root", "other")}


@pytest.fixture(scope="module")
def server(roots: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("cabinet-signing-keys")
    with migrated_database() as database_url:
        env = {
            **os.environ,
            **INTERVALS,
            "DATABASE_URL": database_url,
            "ROOT_CERTIFICATE": str(roots["root"] / "root.pem"),
        }
        _cli(env, "rotate-signing-key", "--root-key", str(roots["root"] / "root-key.pem"), "--now")  # the first key
        with running_server(env, cwd=folder) as url:
            yield url, {**env, "CABINET_URL": url}


def _certify(request: str, root: Path, folder: Path) -> str:
    """On the root holder's machine: its root's two files, the request carried over, no database."""
    (folder / "signing-key.csr").write_text(request)
    env = {
        **os.environ,
        **INTERVALS,
        "ROOT_CERTIFICATE": str(root / "root.pem"),
        "DATABASE_URL": "postgresql://nowhere.invalid/x",
    }
    _cli(
        env,
        "certify-signing-key",
        str(folder / "signing-key.csr"),
        "--root-key",
        str(root / "root-key.pem"),
        "--out",
        str(folder / "signing-key.pem"),
    )
    return (folder / "signing-key.pem").read_text()


def _certificate_of(url: str, code: str) -> str:
    return httpx.get(f"{url}/v1/installations/{code}/support").json()["certificate"]


def _paste(page: Page, certificate: str) -> None:
    _act(
        page,
        f"document.querySelector('#certificate').value = {certificate!r};"
        " document.querySelector('#publish button[type=submit]').click();",
    )


def test_an_admin_rotates_the_signing_key_with_a_certificate_made_offline_by_the_roots_holder(
    server: tuple[str, dict[str, str]], roots: dict[str, Path], tmp_path: Path
) -> None:
    url, env = server
    registered = httpx.post(
        f"{url}/v1/installations",
        json={"code": "ACME-1", "support_end": "2027-06-30"},
        headers=_admin_token(),
    )
    assert registered.status_code == 201, registered.text
    old_kid = jwt.get_unverified_header(_certificate_of(url, "ACME-1"))["kid"]
    setup_link = _create_admin(env, "keeper")

    with chromium_page(CHROMIUM, OFFLINE) as page:
        page.send("Network.enable")
        page.send("Network.setUserAgentOverride", userAgent="Chromium test", acceptLanguage="ru-RU,ru;q=0.9")
        page.send("Emulation.setDeviceMetricsOverride", **DESKTOP)
        _go(page, setup_link)
        _fill(page, "main form", {"password": PASSWORD, "password_confirmation": PASSWORD})
        _fill(page, "form[action='/cabinet/login']", {"username": "keeper", "password": PASSWORD})

        # It prepares a rotation: a new key, not published, and the request the root's holder certifies.
        _go(page, f"{url}/cabinet/signing-keys")
        assert page.evaluate("document.documentElement.lang") == "ru"
        _act(page, "document.querySelector('#prepare button').click()")
        kid = str(page.evaluate("document.querySelector('#pending').dataset.kid"))
        request = str(page.evaluate("document.querySelector('#request').value"))
        assert request.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        published = {key["kid"] for key in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}
        assert kid not in published and old_kid in published
        _loaded_only_from(page, url)

        # A certificate by another root is refused under the form; nothing is published, the key stays prepared.
        _paste(page, _certify(request, roots["other"], tmp_path))
        assert page.evaluate("document.querySelector('#certificate').getAttribute('aria-invalid')") == "true"
        refusal = _text(page, "#certificate-error")
        assert "корнем" in refusal, refusal
        assert page.evaluate("document.querySelector('#pending').dataset.kid") == kid

        # The root's own certificate of the request: published now, signing once every process and JWKS has it.
        _paste(page, _certify(request, roots["root"], tmp_path))
        notice = _text(page, "#published")
        assert kid in notice, notice
        published_at = time.monotonic()
        assert not page.evaluate("!!document.querySelector('#pending')")
        assert page.evaluate("!!document.querySelector('#prepare')")

        # A second rotation, prepared and discarded.
        _act(page, "document.querySelector('#prepare button').click()")
        discarded = str(page.evaluate("document.querySelector('#pending').dataset.kid"))
        _act(page, "document.querySelector('#discard button').click()")
        assert page.evaluate("!!document.querySelector('#prepare')")

        _go(page, f"{url}/cabinet/audit")
        entries = page.evaluate(
            "[...document.querySelectorAll('#audit tbody tr')].map(r => [r.dataset.actor, r.dataset.action])"
        )
        _go(page, f"{url}/cabinet/signing-keys")
        listed = _text(page, "#signing-keys")
        _loaded_only_from(page, url)

    time.sleep(max(0.0, published_at + 2 + 1.5 - time.monotonic()))  # publication (2 s), then a reload (1 s)
    jwks = {key["kid"] for key in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}
    assert {kid, old_kid} <= jwks and discarded not in jwks and kid in listed
    registered = httpx.post(
        f"{url}/v1/installations", json={"code": "ACME-2", "support_end": "2027-06-30"}, headers=_admin_token()
    )
    assert registered.status_code == 201, registered.text
    certificate = _certificate_of(url, "ACME-2")
    assert jwt.get_unverified_header(certificate)["kid"] == kid
    root = trust.load_certificate(roots["root"] / "root.pem")
    assert verification.verify(certificate, root=root, on=datetime.now(UTC), installation="ACME-2")["sub"] == "ACME-2"
    assert isinstance(entries, list)
    assert [action for actor, action in entries if actor == "keeper" and action.startswith("signing_key.")] == [
        "signing_key.discarded",
        "signing_key.prepared",
        "signing_key.published",
        "signing_key.prepared",
    ]
