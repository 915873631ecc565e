"""The project's own documents are served by the service: the licensing rules at /docs/rules, with an
anchor per rule that every (Rn) of the API document links to, and the contract's fixed points at
/docs/contract."""

import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from service.http import docs
from service.http.app import create_app
from service.http.openapi import document
from tests.conftest import NO_DATABASE, make_settings
from tests.test_rules import WORKED_EXAMPLES

pytestmark = pytest.mark.anyio

RULE_LINK = re.compile(r"\[(R\d+)\]\(/docs/rules#([^)]*)\)")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(NO_DATABASE))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield client
    finally:
        await app.state.runtime.close()


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


async def test_the_rules_are_served_with_an_anchor_per_rule(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/rules")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    for n in range(1, 11):
        assert re.search(rf'<h3 id="r{n}">R{n} — ', response.text), f"R{n}"
    assert 'id="worked-examples"' in response.text and "<table>" in response.text


async def test_the_pages_load_nothing_and_run_nothing(client: httpx.AsyncClient) -> None:
    """The service runs in closed networks: no script, no font, no style from elsewhere."""
    for url in docs.PAGES:
        response = await client.get(url)

        assert response.status_code == 200, url
        assert response.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
        assert "<script" not in response.text and "://" not in response.text, url


async def test_every_rule_the_api_document_cites_links_to_its_anchor(client: httpx.AsyncClient) -> None:
    anchors = _ids((await client.get("/docs/rules")).text)
    text = json.dumps(json.loads(document()), ensure_ascii=False)

    links = RULE_LINK.findall(text)
    assert len(links) >= 9
    for rule, anchor in links:
        assert anchor == rule.lower() and anchor in anchors, rule
    assert not re.findall(r"\bR\d+\b", RULE_LINK.sub("", text)), "an (Rn) that is not a link to /docs/rules"


async def test_the_contract_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/contract")

    assert response.status_code == 200
    assert {"endpoints", "error-codes"} <= _ids(response.text)
    assert "licenses_insufficient" in response.text


async def test_the_error_reference_is_served_in_both_languages(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/errors")

    assert response.status_code == 200
    assert {"english-en", "ru"} <= _ids(response.text)
    assert "<code>key_malformed</code>" in response.text and "Сверьте ключ с напечатанным" in response.text


def test_raw_html_in_a_document_is_shown_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hostile.md").write_text('# R1 — <img src=x onerror="alert(1)">\n\n<script>alert(2)</script>\n')
    monkeypatch.setattr(docs, "DOCUMENTS", tmp_path)

    html = docs.page("hostile.md")

    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and '<h1 id="r1">' in html


def _cell_date(text: str) -> date | None:
    found = re.search(r"\d{4}-\d{2}-\d{2}", text)
    return date.fromisoformat(found.group()) if found else None


def test_the_worked_examples_table_is_what_the_rules_tests_check() -> None:
    markdown = (docs.DOCUMENTS / "licensing-rules.md").read_text()
    table = markdown.split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if re.match(r"\| \d{4}-", line)
    ]

    documented = [
        (
            _cell_date(anchor),
            int(months),
            _cell_date(day),
            int(keys),
            None if after.startswith("refused") else int(after),
            None if end.startswith("unchanged") else _cell_date(end),
            int(required),
            int(missed),
        )
        for anchor, months, day, keys, _state, after, end, required, missed in rows
    ]

    assert documented == WORKED_EXAMPLES
