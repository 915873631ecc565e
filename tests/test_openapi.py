"""The contract is committed: `openapi/openapi.json` is what the app documents, and it documents every operation
fully, in a form that generated clients and linters take as it is."""

import json
import re
from pathlib import Path

import pytest

from service.http.openapi import STATUS, document

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
SPEC = json.loads(document())
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
]


def test_the_committed_contract_is_what_the_app_documents() -> None:
    assert COMMITTED.read_text() == document(), "regenerate it: timex-licensing openapi"


@pytest.mark.parametrize(("where", "operation"), OPERATIONS, ids=[where for where, _ in OPERATIONS])
def test_every_operation_is_documented_with_its_errors(where: str, operation: dict) -> None:
    assert operation.get("summary") and operation.get("description"), where
    assert operation.get("tags"), where
    for status, response in operation["responses"].items():
        assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}
        if status.startswith(("4", "5")):
            [(media_type, content)] = response["content"].items()
            if media_type == "application/problem+json":
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, where
                for code, example in content["examples"].items():
                    assert (example["value"]["code"], example["value"]["status"]) == (code, int(status))
                    assert f"`{code}`" in response["description"]
            else:  # the token endpoint's errors, as RFC 6749 writes them
                assert (where, media_type) == ("POST /v1/auth/token", "application/json")
                assert content["schema"] == {"$ref": "#/components/schemas/OAuth2Error"}
        if status in ("429", "503"):
            assert "Retry-After" in response["headers"], where
        if status == "401":
            assert "WWW-Authenticate" in response["headers"], where


def test_each_operation_lists_only_the_codes_it_can_answer() -> None:
    def codes(where: str) -> set[str]:
        operation = dict(OPERATIONS)[where]
        return {
            code
            for response in operation["responses"].values()
            for code in response.get("content", {}).get("application/problem+json", {}).get("examples", {})
        }

    assert "key_already_used" not in codes("POST /v1/installations")
    assert codes("GET /v1/installations/{code}/support") == {
        "invalid_request",
        "installation_not_found",
        "unavailable",
        "internal_error",
    }
    assert {"licenses_insufficient", "key_already_used", "key_malformed", "rate_limited"} <= codes(
        "POST /v1/activations"
    )
    assert set(STATUS) >= {code for where, _ in OPERATIONS for code in codes(where)}


def _parameters(operation: dict) -> dict[str, dict]:
    return {parameter["name"]: parameter for parameter in operation.get("parameters", [])}


LISTS = [where for where, operation in OPERATIONS if "cursor" in _parameters(operation)]


def test_every_list_documents_the_one_pagination_convention() -> None:
    assert len(LISTS) == 8, LISTS
    for where in LISTS:
        operation = dict(OPERATIONS)[where]
        parameters = _parameters(operation)
        assert parameters["limit"]["schema"]["maximum"] == 1000, where
        assert parameters["cursor"]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,400}$", where
        assert operation["responses"]["200"]["headers"]["Link"] == {"$ref": "#/components/headers/Link"}, where
        page = _schema(operation["responses"]["200"]["content"]["application/json"]["schema"])
        assert {"items", "has_more", "next_cursor"} <= set(page["required"]), where
    assert _parameters(dict(OPERATIONS)["GET /v1/keys"])["after"]["deprecated"] is True


def _strings(node: object) -> list[dict]:
    if isinstance(node, list):
        return [found for item in node for found in _strings(item)]
    if not isinstance(node, dict):
        return []
    here = [node] if node.get("type") == "string" else []
    return here + [found for value in node.values() for found in _strings(value)]


def _schema(ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref", "")
    return SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_every_string_a_request_carries_is_bounded_in_the_document() -> None:
    """What the server refuses is what the document says: a generated client or a fuzzer sends nothing longer."""
    for where, operation in OPERATIONS:
        inputs = [parameter["schema"] for parameter in operation.get("parameters", [])]
        for content in operation.get("requestBody", {}).get("content", {}).values():
            schema = _schema(content["schema"])
            inputs += [_schema(variant) for variant in schema.get("oneOf", [schema])]
        for string in _strings(inputs):
            assert "maxLength" in string or "enum" in string or "const" in string, (where, string)


def test_dates_idempotency_keys_and_grant_types_are_documented_as_checked() -> None:
    quote = _parameters(dict(OPERATIONS)["GET /v1/quote"])["support_end"]["schema"]
    issue = _parameters(dict(OPERATIONS)["POST /v1/keys"])["Idempotency-Key"]["schema"]
    grant = SPEC["components"]["schemas"]["TokenRequest"]["properties"]["grant_type"]

    assert re.fullmatch(quote["pattern"], "2000-01-01") and re.fullmatch(quote["pattern"], "2100-12-31")
    assert not re.search(quote["pattern"], "1999-12-31") and not re.search(quote["pattern"], "2101-01-01")
    assert (issue["maxLength"], issue["pattern"]) == (255, "^[\\x20-\\x7e]{1,255}$")
    assert grant["const"] == "client_credentials"


def test_a_refusal_for_too_few_licenses_documents_its_quote() -> None:
    response = dict(OPERATIONS)["POST /v1/activations"]["responses"]["402"]
    example = response["content"]["application/problem+json"]["examples"]["licenses_insufficient"]["value"]
    problem = SPEC["components"]["schemas"]["Problem"]

    assert example["quote"]["licenses_required"] == 2
    assert problem["properties"]["quote"]["anyOf"][0] == {"$ref": "#/components/schemas/QuoteOut"}
    assert {"key_index", "key_prefix"} <= set(problem["properties"])


def test_operations_and_schemas_have_readable_names() -> None:
    ids = {where: operation["operationId"] for where, operation in OPERATIONS}

    assert ids["POST /v1/activations"] == "activateKeys"
    assert ids["GET /v1/installations/{code}/support"] == "getSupportState"
    assert ids["GET /v1/installations/{code}/quote"] == "quoteRenewal"
    assert ids["POST /v1/installations"] == "registerInstallation"
    assert ids["POST /v1/keys"] == "issueKeys"
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", operation_id) for operation_id in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    generated = [name for name in SPEC["components"]["schemas"] if name.startswith(("Body_", "Response"))]
    assert generated == []
    assert "Response" not in json.dumps(SPEC["paths"]).replace('"Successful Response"', "")


def test_the_document_describes_its_tags_servers_and_contact() -> None:
    used = {tag for _, operation in OPERATIONS for tag in operation["tags"]}

    assert {tag["name"] for tag in SPEC["tags"] if tag["description"]} == used
    assert SPEC["servers"] and SPEC["info"]["contact"]["name"]


def test_a_registration_is_one_of_two_shapes() -> None:
    body = dict(OPERATIONS)["POST /v1/installations"]["requestBody"]["content"]["application/json"]["schema"]

    assert body["oneOf"] == [
        {"$ref": "#/components/schemas/NewSale"},
        {"$ref": "#/components/schemas/ExistingCustomer"},
    ]


def test_licenses_is_a_count_in_every_answer() -> None:
    schemas = SPEC["components"]["schemas"]
    kinds = {
        name: schema["properties"]["licenses"]["type"]
        for name, schema in schemas.items()
        if "licenses" in schema.get("properties", {})
    }

    assert set(kinds) >= {"QuoteOut", "ActivationOut", "ActivationSummaryOut"}
    assert set(kinds.values()) == {"integer"}


def test_resellers_get_tokens_by_oauth2_client_credentials_and_admins_paste_theirs() -> None:
    schemes = SPEC["components"]["securitySchemes"]

    assert schemes["OAuth2ClientCredentials"]["flows"] == {
        "clientCredentials": {"tokenUrl": "/v1/auth/token", "scopes": {}}
    }
    assert (schemes["HTTPBearer"]["type"], schemes["HTTPBearer"]["scheme"]) == ("http", "bearer")
    assert {"OAuth2ClientCredentials": []} in dict(OPERATIONS)["POST /v1/installations"]["security"]
    assert dict(OPERATIONS)["POST /v1/keys"]["security"] == [{"HTTPBearer": []}]
