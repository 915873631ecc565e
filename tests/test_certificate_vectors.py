"""The test vectors in docs/certificate-vectors/ are what the docs say: each is answered by the reference verifier
(and by `timex-licensing verify-certificate`) as vectors.json says, and the script that wrote them writes vectors
that are answered the same way."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509

from service import verification
from service.cli import main

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "certificate-vectors"


def _answers(directory: Path) -> list[tuple[str, str, dict | None]]:
    """Each vector's name, what it must give, and what the reference verifier gives."""
    answers = []
    for vector in json.loads((directory / "vectors.json").read_text())["vectors"]:
        revocations = vector.get("revocations")
        try:
            verified = verification.verify(
                (directory / vector["file"]).read_text(),
                root=x509.load_pem_x509_certificate((directory / vector["root"]).read_bytes()),
                on=datetime.fromisoformat(vector["on"]),
                installation=vector.get("installation"),
                revocation_list=None
                if revocations is None
                else x509.load_der_x509_crl((directory / revocations).read_bytes()),
            )
        except verification.Rejected as rejected:
            answers.append((vector["name"], vector["expect"], {"refused": rejected.reason}))
        else:
            answers.append((vector["name"], vector["expect"], {"claims": verified, "vector": vector}))
    return answers


def _check(answers: list[tuple[str, str, dict | None]]) -> None:
    for name, expect, answer in answers:
        assert answer is not None
        if expect == "valid":
            assert "claims" in answer, f"{name}: refused ({answer})"
            assert answer["claims"] == answer["vector"].get("claims", answer["claims"]), name
        else:
            assert answer == {"refused": expect}, name


def test_the_committed_vectors_are_answered_as_they_say() -> None:
    answers = _answers(VECTORS)

    _check(answers)
    assert {expect for _, expect, _ in answers} >= {
        "valid",
        "untrusted_key",
        "expired",
        "bad_signature",
        "no_chain",
        "key_revoked",
        "wrong_installation",
        "bad_revocation_list",
    }


def test_the_script_writes_vectors_answered_as_they_say(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "scripts/certificate-vectors", "--out", str(tmp_path)], check=True, timeout=60)

    _check(_answers(tmp_path))
    assert json.loads((tmp_path / "vectors.json").read_text()) == json.loads((VECTORS / "vectors.json").read_text())


@pytest.mark.parametrize(
    ("file", "extra", "code"),
    [
        ("good.jwt", ["--installation", "acme-0001"], 0),
        ("tampered.jwt", [], 1),
        ("good.jwt", ["--revocations", str(VECTORS / "revoked.crl")], 1),
    ],
)
def test_verify_certificate_prints_the_claims_or_why_not(capsys, file: str, extra: list[str], code: int) -> None:
    argv = ["verify-certificate", str(VECTORS / file), "--root", str(VECTORS / "root.pem"), "--on", "2026-12-10"]

    assert main(argv + extra) == code

    out, err = capsys.readouterr()
    if code == 0:
        assert json.loads(out)["sub"] == "ACME-0001"
    else:
        assert out == "" and err.split(":")[0] in {"bad_signature", "key_revoked"}


def test_verify_certificate_says_what_it_cannot_read(capsys, tmp_path: Path) -> None:
    (tmp_path / "not-a-root.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n")

    missing = main(["verify-certificate", str(tmp_path / "none.jwt"), "--root", str(VECTORS / "root.pem")])
    broken = main(["verify-certificate", str(VECTORS / "good.jwt"), "--root", str(tmp_path / "not-a-root.pem")])

    assert (missing, broken) == (1, 1)
    assert capsys.readouterr().err.count("unreadable: ") == 2


NODE_VERIFIER = Path(__file__).resolve().parent.parent / "tools" / "node-verifier"


@pytest.fixture(scope="module")
def node_verifier() -> Path:
    """tools/node-verifier, its one package (panva's jose) installed from its lock file."""
    if not (NODE_VERIFIER / "node_modules" / "jose").exists():
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_VERIFIER,
            check=True,
            timeout=300,
        )
    return NODE_VERIFIER / "verify.mjs"


def test_an_independent_verifier_written_from_the_docs_answers_the_vectors_alike(node_verifier: Path) -> None:
    """docs/certificates.md's algorithm in Node.js, with its X509Certificate and panva's jose (no code of the
    service): every vector without a revocation list gets the same answer as from the reference verifier."""
    answers = {}
    for vector in json.loads((VECTORS / "vectors.json").read_text())["vectors"]:
        if "revocations" in vector:
            continue
        installation = [vector["installation"]] if "installation" in vector else []
        ran = subprocess.run(
            [
                "node",
                str(node_verifier),
                str(VECTORS / vector["file"]),
                str(VECTORS / vector["root"]),
                vector["on"],
                *installation,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        answers[vector["name"]] = "valid" if ran.returncode == 0 else ran.stderr.strip()

    assert answers == {
        vector["name"]: vector["expect"]
        for vector in json.loads((VECTORS / "vectors.json").read_text())["vectors"]
        if "revocations" not in vector
    }
    assert len(answers) >= 8
