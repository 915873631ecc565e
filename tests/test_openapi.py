"""The contract is committed: `openapi/openapi.json` is what the app documents, and it documents
every operation fully."""

import json
from pathlib import Path

from service.http.openapi import document

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_the_committed_contract_is_what_the_app_documents() -> None:
    assert COMMITTED.read_text() == document(), "regenerate it: timex-licensing openapi"


def test_every_operation_is_documented_with_its_errors() -> None:
    spec = json.loads(document())
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary") and operation.get("description"), where
            assert operation.get("tags"), where
            if path.startswith("/v1/"):
                errors = [s for s in operation["responses"] if s.startswith(("4", "5"))]
                assert errors, where
                assert all("application/problem+json" in operation["responses"][s]["content"] for s in errors), where


def test_the_bearer_scheme_is_declared_for_the_authorize_button() -> None:
    spec = json.loads(document())

    scheme = spec["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert {"HTTPBearer": []} in spec["paths"]["/v1/keys"]["post"]["security"]
