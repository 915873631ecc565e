"""The hot routes answered without FastAPI's request handling (`service.http.hot_routes`) answer exactly as
their FastAPI routes do: the same status, headers and body, refusals included. Each request is sent twice: as
it comes (the hot path), and in a form only FastAPI's route takes (an unused query parameter; a content type
with a charset), which must mean the same."""

import httpx
import pytest

from service import keyformat
from service.http.observability import REQUESTS
from tests.api import Api

pytestmark = pytest.mark.anyio

JSON_WITH_CHARSET = {"content-type": "application/json; charset=utf-8"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def _traced(api: Api) -> None:
    """Every request continues one trace: each answer's `traceparent` is that trace with a span of its own."""
    api.client.headers["traceparent"] = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _seen(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """What a client sees, less what differs by design between two requests: the request id and the span id."""
    headers = {name: value for name, value in response.headers.items() if name != "x-request-id"}
    version, trace_id, _span_id, flags = headers.pop("traceparent").split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01"), "the request's trace, continued"
    return response.status_code, headers, response.content


@pytest.mark.parametrize("code", ["ACME", "acme", "NOPE", "bad code!", "x" * 65])
@pytest.mark.parametrize("what", ["support", "quote"])
async def test_a_read_is_answered_as_the_route_answers_it(api: Api, code: str, what: str) -> None:
    await api.installation("ACME", purchased_on="2026-11-01")

    hot = await api.get(f"/v1/installations/{code}/{what}", headers={"accept-language": "ru"})
    routed = await api.get(f"/v1/installations/{code}/{what}?unused=1", headers={"accept-language": "ru"})

    assert _seen(hot) == _seen(routed)


@pytest.mark.parametrize(
    "body",
    [
        {"installation": "NOPE", "keys": ["TXS-0"]},
        {"installation": "ACME", "keys": ["not a key"]},
        {"installation": "ACME", "keys": []},
        {"installation": "ACME", "keys": ["a", "a"], "extra": 1},
        {"installation": "ACME"},
    ],
    ids=["unknown-installation", "malformed-key", "no-keys", "extra-field", "no-keys-field"],
)
async def test_a_refused_activation_is_answered_as_the_route_answers_it(api: Api, body: dict) -> None:
    await api.installation("ACME", purchased_on="2026-11-01")

    hot = await api.post("/v1/activations", body)
    routed = await api.post("/v1/activations", body, headers=JSON_WITH_CHARSET)

    assert _seen(hot) == _seen(routed)
    assert hot.headers["content-type"] == "application/problem+json"


async def test_too_few_licenses_and_a_replay_are_answered_as_the_route_answers_them(api: Api) -> None:
    await api.installation("LAPSED", purchased_on="2023-01-01")
    await api.installation("ACME", purchased_on="2026-11-01")
    [key] = await api.keys(1)
    await api.activate("ACME", [key])
    too_few = {"installation": "LAPSED", "keys": await api.keys(1)}
    replay = {"installation": "ACME", "keys": [key]}

    for body in (too_few, replay):
        hot = await api.post("/v1/activations", body)
        routed = await api.post("/v1/activations", body, headers=JSON_WITH_CHARSET)
        assert _seen(hot) == _seen(routed)
    assert (hot.status_code, (await api.post("/v1/activations", too_few)).status_code) == (200, 402)


async def test_an_activation_is_answered_and_counted_as_the_route_answers_it(api: Api) -> None:
    await api.installation("HOT", purchased_on="2026-11-01")
    await api.installation("ROUTED", purchased_on="2026-11-01")
    hot_keys, routed_keys = await api.keys(2), await api.keys(2)
    counted = REQUESTS.labels("/v1/activations", "POST", "201")
    before = counted._value.get()

    hot = await api.post("/v1/activations", {"installation": "HOT", "keys": hot_keys})
    routed = await api.post(
        "/v1/activations", {"installation": "ROUTED", "keys": routed_keys}, headers=JSON_WITH_CHARSET
    )

    assert (hot.status_code, hot.headers["content-type"]) == (routed.status_code, routed.headers["content-type"])
    same = ("activated_on", "support_end_before", "support_end_after", "months_added", "licenses")
    assert {k: hot.json()[k] for k in same} == {k: routed.json()[k] for k in same}
    assert counted._value.get() == before + 2  # each under its route's name
    limit = ("ratelimit-policy", "ratelimit")
    assert [hot.headers[name] for name in limit] == [routed.headers[name] for name in limit]


async def test_a_counted_failure_tells_the_same_limit_on_both_paths(api: Api) -> None:
    await api.installation("ACME", purchased_on="2026-11-01")
    body = {"installation": "ACME", "keys": [keyformat.generate()]}

    hot = await api.post("/v1/activations", body)
    routed = await api.post("/v1/activations", body, headers=JSON_WITH_CHARSET)

    assert (hot.status_code, routed.status_code) == (404, 404)
    assert hot.headers["ratelimit-policy"] == routed.headers["ratelimit-policy"] == '"activation";q=10;w=900'
    # One limiter counts both: the second answer has one failure fewer left.
    assert [response.headers["ratelimit"].split(";")[1] for response in (hot, routed)] == ["r=9", "r=8"]


async def test_a_body_that_is_no_json_or_too_large_is_answered_as_the_route_answers_it(api: Api) -> None:
    async def chunks():
        for _ in range(10):
            yield b" " * 10_000

    for content, status in ((b'{"installation": "ACME", "keys": [', 400), (chunks, 413)):
        answers = [
            await api.client.post(
                "/v1/activations", content=content() if callable(content) else content, headers={"content-type": kind}
            )
            for kind in ("application/json", JSON_WITH_CHARSET["content-type"])
        ]
        assert _seen(answers[0]) == _seen(answers[1])
        assert answers[0].status_code == status
