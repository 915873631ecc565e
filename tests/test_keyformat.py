"""Keys: TXS-XXXXX-XXXXX-XXXXX-XXXXX, Crockford base32, 90 random bits, typos caught offline."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import keyformat
from service.errors import KeyMalformed

FORMAT = re.compile(r"^TXS(-[0-9A-HJKMNP-TV-Z]{5}){4}$")
SYMBOLS = keyformat.DATA_SYMBOLS + keyformat.CHECK_SYMBOLS


def _payload(key: str) -> str:
    return key.replace("-", "")[len(keyformat.PREFIX):]


def _refused(text: str) -> bool:
    try:
        keyformat.normalize(text)
    except KeyMalformed:
        return True
    return False


def test_generated_keys_have_the_format_and_are_their_own_canonical_form() -> None:
    key = keyformat.generate()

    assert FORMAT.match(key)
    assert keyformat.normalize(key) == key


def test_a_thousand_keys_are_all_different() -> None:
    assert len({keyformat.generate() for _ in range(1000)}) == 1000


def test_every_single_substitution_and_adjacent_swap_of_a_key_is_refused() -> None:
    payload = _payload(keyformat.generate())
    substitutions = [payload[:i] + s + payload[i + 1:]
                     for i in range(SYMBOLS) for s in keyformat.ALPHABET if s != payload[i]]
    swaps = [payload[:i] + payload[i + 1] + payload[i] + payload[i + 2:]
             for i in range(SYMBOLS - 1) if payload[i] != payload[i + 1]]

    assert all(_refused(typo) for typo in substitutions + swaps)


keys = st.builds(lambda _: keyformat.generate(), st.integers())


@given(keys, st.integers(0, SYMBOLS - 1), st.sampled_from(keyformat.ALPHABET))
def test_a_mistyped_symbol_is_always_caught(key: str, at: int, symbol: str) -> None:
    payload = _payload(key)
    typo = payload[:at] + symbol + payload[at + 1:]

    assert _refused(typo) == (typo != payload)


@given(keys, st.integers(0, SYMBOLS - 2))
def test_two_swapped_neighbours_are_always_caught(key: str, at: int) -> None:
    payload = _payload(key)
    swapped = payload[:at] + payload[at + 1] + payload[at] + payload[at + 2:]

    assert _refused(swapped) == (swapped != payload)


def test_keys_are_read_as_people_type_them() -> None:
    key = keyformat.generate()
    lookalikes = key.lower().replace("0", "o").replace("1", "l")

    assert keyformat.normalize(" " + lookalikes.replace("-", " ") + "\n") == key
    assert keyformat.normalize(_payload(key)) == key
    assert keyformat.normalize(key.replace("1", "I")) == key


@pytest.mark.parametrize("text", ["", "TXS", "TXS-12345", "x" * 101, "TXS-UUUUU-UUUUU-UUUUU-UUUUU"])
def test_malformed_text_is_refused(text: str) -> None:
    assert _refused(text)


def test_the_refusal_never_quotes_the_key() -> None:
    key = keyformat.generate()
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")

    with pytest.raises(KeyMalformed) as refusal:
        keyformat.normalize(typo)

    assert _payload(typo) not in str(refusal.value) and typo not in str(refusal.value)


def test_the_stored_digest_is_an_hmac_under_the_server_secret() -> None:
    key = keyformat.generate()

    assert len(keyformat.digest(key, b"one")) == 32
    assert keyformat.digest(key, b"one") != keyformat.digest(key, b"two")
    assert keyformat.display_prefix(key) == key[:8]
