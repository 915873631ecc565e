"""Keys: TXS-XXXXX-XXXXX-XXXXX-XXXXX, Crockford base32, 90 random bits, typos caught offline.

No key is spelled out here: every key is made by `generate()` or from data symbols by `from_data()`.
"""

import hashlib
import hmac
import random
import re
from collections.abc import Callable
from itertools import combinations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service import keyformat
from service.errors import DomainError, KeyMalformed

FORMAT = re.compile(r"^TXS(-[0-9A-HJKMNP-TV-Z]{5}){4}$")
SYMBOLS = keyformat.DATA_SYMBOLS + keyformat.CHECK_SYMBOLS
ALPHABET = keyformat.ALPHABET
MESSAGE = "The key is not a valid Timex Support key: check it for typos."


def _payload(key: str) -> str:
    """The 20 symbols of a canonical key, without prefix and dashes."""
    return key.replace("-", "")[len(keyformat.PREFIX) :]


def _refused(text: str) -> bool:
    try:
        keyformat.normalize(text)
    except KeyMalformed:
        return True
    return False


def _substituted(payload: str, at: int, symbol: str) -> str:
    return payload[:at] + symbol + payload[at + 1 :]


def _swapped(payload: str, at: int) -> str:
    return payload[:at] + payload[at + 1] + payload[at] + payload[at + 2 :]


def _fixed_key(seed: int = 20240601) -> str:
    rng = random.Random(seed)
    return keyformat.from_data([rng.randrange(32) for _ in range(keyformat.DATA_SYMBOLS)])


data_symbols = st.lists(st.integers(0, 31), min_size=keyformat.DATA_SYMBOLS, max_size=keyformat.DATA_SYMBOLS)
keys = data_symbols.map(keyformat.from_data)


# The format


def test_a_generated_key_has_the_format_and_is_its_own_canonical_form() -> None:
    for _ in range(100):
        key = keyformat.generate()

        assert FORMAT.match(key), key
        assert keyformat.normalize(key) == key


@given(keys)
def test_every_key_built_from_data_symbols_is_valid_and_canonical(key: str) -> None:
    assert FORMAT.match(key)
    assert keyformat.normalize(key) == key


def _gf32_mul(a: int, b: int) -> int:
    """Multiplication in GF(32) = GF(2)[x] / (x^5 + x^2 + 1), written apart from the module's tables."""
    product = 0
    for bit in range(5):
        if b >> bit & 1:
            product ^= a << bit
    for bit in range(8, 4, -1):
        if product >> bit & 1:
            product ^= 0b100101 << (bit - 5)
    return product


def _evaluate(values: list[int], point: int) -> int:
    """c(point), the first symbol being the coefficient of the highest power."""
    result = 0
    for value in values:
        result = _gf32_mul(result, point) ^ value
    return result


ALPHA = 0b00010  # x


@given(data_symbols)
def test_a_key_is_its_data_symbols_then_two_checks_making_alpha_and_alpha_squared_roots(data: list[int]) -> None:
    values = [ALPHABET.index(symbol) for symbol in _payload(keyformat.from_data(data))]

    assert values[: keyformat.DATA_SYMBOLS] == data
    assert _evaluate(values, ALPHA) == 0
    assert _evaluate(values, _gf32_mul(ALPHA, ALPHA)) == 0


@pytest.mark.parametrize(
    "data",
    [
        [0] * (keyformat.DATA_SYMBOLS - 1),
        [0] * (keyformat.DATA_SYMBOLS + 1),
        [0] * (keyformat.DATA_SYMBOLS - 1) + [32],
        [-1] + [0] * (keyformat.DATA_SYMBOLS - 1),
    ],
)
def test_a_key_is_built_only_from_eighteen_symbols_of_zero_to_thirty_one(data: list[int]) -> None:
    with pytest.raises(ValueError, match="18 data symbols"):
        keyformat.from_data(data)


def test_the_highest_symbol_value_is_the_alphabets_last_symbol() -> None:
    key = keyformat.from_data([31] * keyformat.DATA_SYMBOLS)

    assert key.startswith("TXS-ZZZZZ-ZZZZZ-ZZZZZ-ZZZ")
    assert keyformat.normalize(key) == key


def test_the_listing_prefix_is_txs_and_the_first_four_symbols() -> None:
    key = keyformat.generate()

    assert keyformat.display_prefix(key) == "TXS-" + _payload(key)[:4]


# Typos are caught without a database


def test_every_single_substitution_of_a_fixed_key_is_refused() -> None:
    payload = _payload(_fixed_key())
    typos = [_substituted(payload, at, symbol) for at in range(SYMBOLS) for symbol in ALPHABET if symbol != payload[at]]

    assert len(typos) == 20 * 31
    assert [typo for typo in typos if not _refused(typo)] == []


def test_every_adjacent_swap_of_a_fixed_key_is_refused() -> None:
    payload = _payload(_fixed_key())
    assert all(payload[at] != payload[at + 1] for at in range(SYMBOLS - 1)), "pick another seed"
    typos = [_swapped(payload, at) for at in range(SYMBOLS - 1)]

    assert len(typos) == 19
    assert [typo for typo in typos if not _refused(typo)] == []


@given(keys, st.integers(0, SYMBOLS - 1), st.integers(1, 31))
def test_a_mistyped_symbol_is_always_caught(key: str, at: int, shift: int) -> None:
    payload = _payload(key)
    symbol = ALPHABET[(ALPHABET.index(payload[at]) + shift) % 32]

    assert _refused(_substituted(payload, at, symbol))


@given(keys, st.integers(0, SYMBOLS - 2))
def test_two_different_swapped_neighbours_are_always_caught(key: str, at: int) -> None:
    payload = _payload(key)
    assume(payload[at] != payload[at + 1])

    assert _refused(_swapped(payload, at))


@pytest.mark.parametrize("at", [4, 9, 14, 17, 18], ids=["dash 1", "dash 2", "dash 3", "data|check", "check|check"])
def test_a_swap_across_a_dash_or_into_the_check_symbols_is_caught_in_the_dashed_form(at: int) -> None:
    payload = _payload(_fixed_key())
    typo = _swapped(payload, at)
    dashed = "-".join(["TXS", *(typo[i : i + 5] for i in range(0, SYMBOLS, 5))])

    assert _refused(dashed)


def test_any_two_mistyped_symbols_anywhere_are_caught_so_the_distance_is_three() -> None:
    """The code is linear: whether a typo is caught depends on the change, not on the key. So one
    key and every change of one or two symbols (all positions, all values) covers every key."""
    values = [ALPHABET.index(symbol) for symbol in _payload(_fixed_key())]
    missed = []
    for first, second in combinations(range(SYMBOLS), 2):
        for a in range(1, 32):
            for b in range(1, 32):
                typo = list(values)
                typo[first] ^= a
                typo[second] ^= b
                if not _refused("".join(ALPHABET[v] for v in typo)):
                    missed.append((first, a, second, b))

    assert missed == []


# Keys are read as people type them


def _key_with_lookalikes() -> str:
    """A key holding 0s, 1s and an S, so that O, I, L (and look-alikes of S) have something to stand for."""
    return keyformat.from_data([0, 1, 2, 3, 4, 0, 1, 31, 30, 29, 0, 1, 10, 11, 12, 1, 0, 25])


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda key: key.lower(), id="lowercase"),
        pytest.param(lambda key: key.replace("-", ""), id="no dashes"),
        pytest.param(lambda key: key.replace("-", " "), id="spaces for dashes"),
        pytest.param(lambda key: f"  {key}\n", id="surrounding whitespace"),
        pytest.param(lambda key: key.replace("-", "\t-\u00a0"), id="tabs and non-breaking spaces"),
        pytest.param(lambda key: key.replace("-", "\u2013"), id="en dashes"),
        pytest.param(lambda key: _payload(key), id="without the prefix"),
        pytest.param(lambda key: "-".join(_payload(key)[i : i + 4] for i in range(0, SYMBOLS, 4)), id="groups of 4"),
        pytest.param(lambda key: key.replace("0", "O"), id="O for 0"),
        pytest.param(lambda key: key.replace("1", "I"), id="I for 1"),
        pytest.param(lambda key: key.replace("1", "L"), id="L for 1"),
        pytest.param(
            lambda key: key.lower().replace("0", "o").replace("1", "l").replace("-", ""), id="all of it at once"
        ),
    ],
)
def test_a_key_typed_loosely_is_read_as_the_canonical_key(typed: Callable[[str], str]) -> None:
    key = _key_with_lookalikes()
    assert {"0", "1", "S"} <= set(_payload(key))

    assert keyformat.normalize(typed(key)) == key


@given(keys, st.sampled_from([" ", "", "-", " - "]), st.booleans(), st.booleans())
def test_case_separators_and_prefix_never_change_the_key(key: str, sep: str, lower: bool, prefix: bool) -> None:
    payload = _payload(key)
    groups = [payload[i : i + 5] for i in range(0, SYMBOLS, 5)]
    typed = sep.join((["TXS"] if prefix else []) + groups)

    assert keyformat.normalize(typed.lower() if lower else typed) == key


# Anything else is refused


def _malformed() -> list[tuple[str, str]]:
    key = _fixed_key()
    payload = _payload(key)
    return [
        ("empty", ""),
        ("only the prefix", "TXS"),
        ("one symbol missing", key[:-1]),
        ("one symbol too many", key + "0"),
        ("one group missing", key[:-6]),
        ("U is not a symbol", key[:-1] + "U"),
        ("punctuation", key[:-1] + "*"),
        ("a non-ASCII look-alike of I", _key_with_lookalikes().replace("1", "\u0131")),  # dotless i
        ("a non-ASCII look-alike of S", _key_with_lookalikes().replace("S", "\u017f")),  # long s
        ("another prefix", "TXT-" + key[4:]),
        ("prefix twice", "TXS-" + key),
        ("too long even if otherwise valid", key + " " * (keyformat.MAX_INPUT - len(key) + 1)),
        ("far too long", payload * 1000),
    ]


@pytest.mark.parametrize("text", [text for _, text in _malformed()], ids=[name for name, _ in _malformed()])
def test_text_that_is_not_a_key_is_refused(text: str) -> None:
    assert _refused(text)


def test_something_other_than_text_is_refused() -> None:
    with pytest.raises(KeyMalformed):
        keyformat.normalize(None)  # type: ignore[arg-type]


@given(st.text(max_size=keyformat.MAX_INPUT + 20))
def test_arbitrary_text_is_either_a_key_or_refused_as_malformed(text: str) -> None:
    try:
        key = keyformat.normalize(text)
    except KeyMalformed:
        return
    assert FORMAT.match(key) and keyformat.normalize(key) == key


# Keys are secrets: refusals never quote them


def test_a_refused_key_is_a_domain_error_named_key_malformed() -> None:
    assert issubclass(keyformat.KeyMalformed, DomainError)
    assert keyformat.KeyMalformed.code == "key_malformed"
    assert str(keyformat.KeyMalformed()) == MESSAGE


@given(keys, st.integers(0, SYMBOLS - 1), st.integers(1, 31), st.booleans())
def test_the_refusal_never_quotes_the_key(key: str, at: int, shift: int, dashed: bool) -> None:
    payload = _payload(key)
    typo = _substituted(payload, at, ALPHABET[(ALPHABET.index(payload[at]) + shift) % 32])
    typed = "TXS-" + "-".join(typo[i : i + 5] for i in range(0, SYMBOLS, 5)) if dashed else typo

    with pytest.raises(KeyMalformed) as refusal:
        keyformat.normalize(typed)

    error = refusal.value
    shown = " ".join([str(error), repr(error), str(error.detail), repr(error.args)])
    assert str(error) == MESSAGE
    assert error.__cause__ is None and error.__context__ is None
    for secret in [typed, typo, key, payload, *(typo[i : i + 5] for i in range(0, SYMBOLS, 5))]:
        assert secret not in shown


@given(st.text(max_size=keyformat.MAX_INPUT + 20))
def test_every_refusal_has_the_same_message_whatever_the_input(text: str) -> None:
    try:
        keyformat.normalize(text)
    except KeyMalformed as error:
        assert str(error) == MESSAGE and error.args == (MESSAGE,)


# What is stored


def test_the_stored_digest_is_an_hmac_sha256_of_the_canonical_key_under_the_server_secret() -> None:
    key = keyformat.generate()

    assert keyformat.digest(key, b"one") == hmac.new(b"one", key.encode(), hashlib.sha256).digest()
    assert len(keyformat.digest(key, b"one")) == 32


def test_the_digest_depends_on_the_secret_and_on_the_key() -> None:
    key, other = keyformat.generate(), keyformat.generate()

    assert keyformat.digest(key, b"one") != keyformat.digest(key, b"two")
    assert keyformat.digest(key, b"one") != keyformat.digest(other, b"one")


def test_a_key_typed_loosely_has_the_digest_of_its_canonical_form() -> None:
    key = _key_with_lookalikes()
    typed = key.lower().replace("0", "o").replace("-", " ")

    assert keyformat.digest(keyformat.normalize(typed), b"s") == keyformat.digest(key, b"s")


# Randomness


def test_a_thousand_generated_keys_are_all_different() -> None:
    assert len({keyformat.generate() for _ in range(1000)}) == 1000


def test_every_random_position_takes_every_one_of_the_32_symbols() -> None:
    """18 positions of 5 bits each: 90 bits. Missing a symbol somewhere in 2,000 keys by chance has a
    probability below 18 · 32 · (31/32)^2000 ≈ 10^-25."""
    payloads = [_payload(keyformat.generate()) for _ in range(2000)]

    for at in range(keyformat.DATA_SYMBOLS):
        assert {payload[at] for payload in payloads} == set(ALPHABET), at


@given(st.lists(keys, min_size=1, max_size=5), st.sampled_from(["\n", " ", "  \n\t"]))
def test_pasted_keys_are_split_one_per_line_or_at_spaces(pasted: list[str], separator: str) -> None:
    assert keyformat.split(separator.join(pasted)) == pasted


@given(st.lists(keys, min_size=1, max_size=5))
def test_a_key_typed_with_spaces_in_it_stays_one_key(pasted: list[str]) -> None:
    spaced = [key.replace("-", " ") for key in pasted]

    assert [keyformat.normalize(key) for key in keyformat.split(" ".join(spaced))] == pasted


def test_a_key_without_its_prefix_ends_at_its_twentieth_symbol() -> None:
    first, second = keyformat.generate(), keyformat.generate()

    assert keyformat.split(f"{first[4:]} {second[4:].replace('-', ' ')}") == [first[4:], second[4:].replace("-", " ")]
