"""Resellers build on a client generated from the committed document: openapi-python-client takes it without a
warning, and the client it makes carries the reseller's workflow (its renewal pipeline listed, keys issued under an
`Idempotency-Key`), its refusals typed (a `402` with its quote, a `409` naming the key)."""

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

from tests.api import ISSUED_KEYS, Api
from tests.test_openapi import COMMITTED

pytestmark = pytest.mark.anyio

PACKAGE = "timex_support_licensing_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client, generated from `openapi/openapi.json` as a reseller would, and imported."""
    folder: Path = tmp_path_factory.mktemp("generated")
    bin_folder = Path(sys.executable).parent
    result = subprocess.run(
        [bin_folder / "openapi-python-client", "generate", "--path", COMMITTED, "--output-path", folder / "client"],
        capture_output=True,
        text=True,
        cwd=folder,
        # The generator formats its output with ruff, which it looks for on PATH.
        env={**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(folder / "client"))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder / "client"))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def _every_item(operation: ModuleType, client: object, **filters: object) -> tuple[list, int]:
    """A list read whole through the one pagination convention, whichever list it is: `cursor` in, `items`,
    `has_more` and `next_cursor` out, and the `Link` header naming the same next page. Also how many pages."""
    items: list = []
    pages = 0
    cursor: object = generated_types().UNSET
    while True:
        response = await operation.asyncio_detailed(client=client, limit=2, cursor=cursor, **filters)
        page = response.parsed
        assert response.status_code == 200, response.content
        items += page.items
        pages += 1
        if not page.has_more:
            assert page.next_cursor is None and "link" not in response.headers
            return items, pages
        assert f"cursor={page.next_cursor}" in response.headers["link"]
        cursor = page.next_cursor


def generated_types() -> ModuleType:
    return _module("types")


async def test_a_reseller_works_through_the_generated_client(generated: ModuleType, api: Api) -> None:
    models = _module("models")
    request_access_token = _module("api.auth.request_access_token")
    register_installation = _module("api.installations.register_installation")
    quote_renewal = _module("api.installations.quote_renewal")
    issue_keys = _module("api.keys.issue_keys")
    list_installations = _module("api.installations.list_installations")
    activate_keys = _module("api.activations.activate_keys")

    def client(token: str | None = None) -> object:
        """The generated client, talking to the app in process: the app's transport is all it is given."""
        where = {"base_url": "http://testserver", "httpx_args": {"transport": api.transport}}
        return generated.Client(**where) if token is None else generated.AuthenticatedClient(token=token, **where)

    public = client()
    admin = client(api.admin["Authorization"].removeprefix("Bearer "))
    reseller = await api.reseller()

    token = await request_access_token.asyncio(
        client=public,
        body=models.TokenRequest(
            grant_type="client_credentials", client_id=reseller["client_id"], client_secret=reseller["client_secret"]
        ),
    )
    assert isinstance(token, models.TokenOut)
    own = client(token.access_token)

    sold = await register_installation.asyncio(
        client=own, body=models.NewSale(code="acme-0001", purchased_on=date(2026, 11, 20))
    )
    lapsed = await register_installation.asyncio(
        client=admin, body=models.ExistingCustomer(code="LAPSED", support_end=date(2024, 1, 1))
    )
    assert isinstance(sold, models.InstallationOut) and sold.code == "ACME-0001"
    assert str(sold.reseller_id) == reseller["id"]
    assert isinstance(lapsed, models.InstallationOut)

    quote = await quote_renewal.asyncio(client=public, code="ACME-0001")
    assert isinstance(quote, models.QuoteOut) and quote.licenses_required == 1 and quote.sufficient

    expiring = await list_installations.asyncio(
        client=own, state=models.ListInstallationsState.EXPIRING, expiring_within_days=365
    )
    assert isinstance(expiring, models.InstallationPage) and not expiring.has_more
    assert [(row.code, row.state, row.renewal_total.amount) for row in expiring.items] == [
        ("ACME-0001", models.PipelineItemOutState.EXPIRING, "12000.00")
    ]

    order = models.KeysIn(count=2, reseller_id=reseller["id"])
    issued = await issue_keys.asyncio(client=admin, body=order, idempotency_key="order-4711")
    again = await issue_keys.asyncio_detailed(client=admin, body=order, idempotency_key="order-4711")
    assert isinstance(issued, models.KeysIssued)
    assert again.parsed == issued and again.headers["Idempotent-Replayed"] == "true"
    first, second = (k.key for k in issued.keys)
    ISSUED_KEYS.update((first, second))

    activated = await activate_keys.asyncio_detailed(
        client=public, body=models.ActivationIn(installation="ACME-0001", keys=[first])
    )
    assert activated.status_code == 201 and isinstance(activated.parsed, models.ActivationOut)
    assert activated.parsed.licenses == 1 and activated.parsed.periods[0].bonus_months == 2

    too_few = await activate_keys.asyncio_detailed(
        client=public, body=models.ActivationIn(installation="LAPSED", keys=[second])
    )
    assert too_few.status_code == 402 and isinstance(too_few.parsed, models.Problem)
    assert too_few.parsed.code == "licenses_insufficient"
    assert isinstance(too_few.parsed.quote, models.QuoteOut) and too_few.parsed.quote.licenses_required == 3

    used = await activate_keys.asyncio_detailed(
        client=public, body=models.ActivationIn(installation="LAPSED", keys=[second, first])
    )
    assert used.status_code == 409 and isinstance(used.parsed, models.Problem)
    assert (used.parsed.code, used.parsed.key_index, used.parsed.key_prefix) == ("key_already_used", 1, first[:8])


async def test_every_list_pages_one_way_through_the_generated_client(generated: ModuleType, api: Api) -> None:
    """One loop reads each list, whatever it holds; and a key is read by its id."""
    models = _module("models")
    admin = generated.AuthenticatedClient(
        token=api.admin["Authorization"].removeprefix("Bearer "),
        base_url="http://testserver",
        httpx_args={"transport": api.transport},
    )
    resellers = [await api.reseller(f"Partner {n}") for n in range(3)]
    await api.installation("ACME-0001", support_end="2027-01-01")
    keys = await api.keys(3, reseller_id=resellers[0]["id"])
    for key in keys:
        assert (await api.activate("ACME-0001", [key])).status_code == 201

    listed_resellers, pages = await _every_item(_module("api.resellers.list_resellers"), admin)
    assert [r.name for r in listed_resellers] == ["Partner 0", "Partner 1", "Partner 2"] and pages == 2
    ledger, pages = await _every_item(_module("api.activations.list_activations"), admin, installation="acme-0001")
    assert [a.installation for a in ledger] == ["ACME-0001"] * 3 and pages == 2
    assert all(isinstance(a, models.LedgerEntryOut) for a in ledger)
    listed_keys, pages = await _every_item(_module("api.keys.list_keys"), admin, reseller_id=resellers[0]["id"])
    assert len(listed_keys) == 3 and pages == 2
    listed_installations, _ = await _every_item(_module("api.installations.list_installations"), admin)
    assert [i.code for i in listed_installations] == ["ACME-0001"]

    one = await _module("api.keys.get_key").asyncio(client=admin, key_id=listed_keys[0].key_id)
    assert isinstance(one, models.KeyOut) and one == listed_keys[0]
