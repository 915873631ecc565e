"""The docs render in a real browser with no internet: headless Chromium opens /docs and /redoc
served by a real service process, and the operations are on the page."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"),
                                reason="no chromium here (CI installs it and runs this test)")


def _render(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                                 *extra, url], capture_output=True, text=True, timeout=120)
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("docs")
    with running_server({**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'docs.db'}"}, cwd=folder) as url:
        yield url


def test_swagger_ui_lists_every_operation_and_offers_authorize(server: str, tmp_path: Path) -> None:
    dom = _render(f"{server}/docs", "--dump-dom")

    for summary in ("Activate keys on an installation", "Support state", "What renewing an installation costs",
                    "Issue keys", "Register an installation", "Get an access token"):
        assert summary in dom
    assert 'class="btn authorize' in dom
    _render(f"{server}/docs", f"--screenshot={tmp_path / 'docs.png'}", "--window-size=1280,2000")
    assert (tmp_path / "docs.png").stat().st_size > 10_000


def test_redoc_renders_the_contract(server: str) -> None:
    dom = _render(f"{server}/redoc", "--dump-dom")

    assert "Activate keys on an installation" in dom and "/v1/activations" in dom
