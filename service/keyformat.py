"""The format of Timex Support keys: `TXS-XXXXX-XXXXX-XXXXX-XXXXX`.

Twenty Crockford base32 symbols: 18 random (90 bits from `secrets`) and 2 check symbols of a
Reed–Solomon code over GF(32). The code has minimum distance 3, so any single mistyped symbol and
any swap of two neighbouring symbols is caught here, without a database lookup. The database
keeps only an HMAC of the canonical key and a short prefix for listings.

The code: symbol values 0–31 are elements of GF(32) = GF(2)[x] / (x^5 + x^2 + 1), α = x. The 20
symbols, first to last, are the coefficients of c(x) from x^19 down to x^0; the 18 random symbols
come first and the 2 check symbols are the remainder of data(x)·x² divided by
g(x) = (x - α)(x - α²) (systematic encoding), so every key has c(α) = c(α²) = 0. Twenty symbols is
a shortened code (n = 20 ≤ 31), which keeps the distance of 3 = n - k + 1. A swap of neighbours
a, b adds (a + b)·(x^(i+1) + x^i), a pattern of weight 2, so it is caught as well.
"""

import hashlib
import hmac
import secrets

from service.errors import KeyMalformed

__all__ = [
    "ALPHABET",
    "CHECK_SYMBOLS",
    "DATA_SYMBOLS",
    "PREFIX",
    "KeyMalformed",
    "digest",
    "display_prefix",
    "from_data",
    "generate",
    "normalize",
    "split",
]

PREFIX = "TXS"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
DATA_SYMBOLS = 18
CHECK_SYMBOLS = 2
SYMBOLS = DATA_SYMBOLS + CHECK_SYMBOLS
GROUP = 5
MAX_INPUT = 100  # characters; longer text is refused before any other work
DISPLAY_SYMBOLS = 4

_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_IN_ALPHABET = frozenset(ALPHABET)
_LOOK_ALIKES = str.maketrans("OIL", "011")  # Crockford: read the look-alikes as what they look like
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"  # ASCII hyphen and what word processors make of it
_DROP_DASHES = str.maketrans("", "", _DASHES)

_PRIMITIVE = 0b100101  # x^5 + x^2 + 1


def _tables() -> tuple[list[int], list[int]]:
    """exp and log in GF(32); exp is doubled so that exp[log a + log b] needs no reduction."""
    exp, log = [0] * 62, [0] * 32
    element = 1
    for power in range(31):
        exp[power] = exp[power + 31] = element
        log[element] = power
        element <<= 1
        if element & 0b100000:
            element ^= _PRIMITIVE
    assert sorted(exp[:31]) == list(range(1, 32)), "x^5 + x^2 + 1 must be primitive"
    return exp, log


_EXP, _LOG = _tables()


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


# g(x) = (x - α)(x - α²) = x² + (α + α²)x + α³: minus is plus in characteristic 2.
_G1, _G0 = _EXP[1] ^ _EXP[2], _EXP[3]
# Every symbol times each of g's coefficients, looked up rather than multiplied: 36 calls less per key checked.
_TIMES_G1 = tuple(_mul(value, _G1) for value in range(32))
_TIMES_G0 = tuple(_mul(value, _G0) for value in range(32))


def _check(data: list[int]) -> list[int]:
    """The remainder of data(x)·x² divided by g(x), highest power first: the two check symbols."""
    r1 = r0 = 0
    for symbol in data:
        feedback = symbol ^ r1
        r1 = r0 ^ _TIMES_G1[feedback]
        r0 = _TIMES_G0[feedback]
    return [r1, r0]


def _format(values: list[int]) -> str:
    return _grouped("".join(ALPHABET[v] for v in values))


def _grouped(symbols: str) -> str:
    return "-".join([PREFIX, *(symbols[i : i + GROUP] for i in range(0, len(symbols), GROUP))])


_RANDOM_BYTES = (DATA_SYMBOLS * 5 + 7) // 8  # 12 bytes hold the 90 random bits


def generate() -> str:
    """A fresh key in canonical form: 18 symbols (90 bits) from `secrets`, then the check.

    The bits are read in one call, 5 to a symbol: a call per symbol was three quarters of the time
    it takes to issue 100,000 keys."""
    bits = int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big")
    return from_data([bits >> (5 * i) & 31 for i in range(DATA_SYMBOLS)])


def from_data(data: list[int]) -> str:
    """The key whose 18 data symbols (values 0–31) are `data`, check symbols added."""
    if len(data) != DATA_SYMBOLS or any(not 0 <= value < 32 for value in data):
        raise ValueError(f"a key needs {DATA_SYMBOLS} data symbols, each 0–31")
    return _format(list(data) + _check(list(data)))


def normalize(text: str) -> str:
    """The canonical form of a key as a person may type it, or `KeyMalformed` (which never quotes it).

    Case, whitespace and dashes do not matter, O reads as 0 and I and L as 1, and the `TXS` prefix
    may be left out; what remains must be 20 symbols with a valid check.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT:
        raise KeyMalformed()
    compact = "".join(text.split()).translate(_DROP_DASHES)
    if not compact.isascii():  # before upper(): "ı".upper() == "I", "ſ".upper() == "S"
        raise KeyMalformed()
    compact = compact.upper()
    if len(compact) == len(PREFIX) + SYMBOLS and compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    symbols = compact.translate(_LOOK_ALIKES)
    if len(symbols) != SYMBOLS or not _IN_ALPHABET.issuperset(symbols):
        raise KeyMalformed()
    values = [_VALUE[symbol] for symbol in symbols]
    if _check(values[:DATA_SYMBOLS]) != values[DATA_SYMBOLS:]:
        raise KeyMalformed()
    return _grouped(symbols)


def split(text: str) -> list[str]:
    """The keys in text a person pasted, as typed: one per line or separated by spaces. A key may itself be
    typed with spaces (`TXS-ABCDE FGHJK …`, `TXS ABCDE …`): a new key begins at a word that begins one (the
    prefix alone, the prefix and a dash, or a whole prefixed key), or once the key so far has its 20 symbols."""
    keys: list[str] = []
    for line in text.splitlines():
        current: list[str] = []
        for word in line.split():
            if current and (_begins_key(word) or _symbols(current) >= SYMBOLS):
                keys.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            keys.append(" ".join(current))
    return keys


def _compact(text: str) -> str:
    return text.translate(_DROP_DASHES).upper()


def _begins_key(word: str) -> bool:
    upper = word.upper()
    if upper == PREFIX or (upper.startswith(PREFIX) and upper[len(PREFIX) : len(PREFIX) + 1] in _DASHES):
        return True
    compact = _compact(word)
    return len(compact) == len(PREFIX) + SYMBOLS and compact.startswith(PREFIX)


def _symbols(words: list[str]) -> int:
    """How many of a key's 20 symbols the words so far hold: the prefix, when they begin with it, is not one."""
    compact = _compact("".join(words))
    return len(compact) - (len(PREFIX) if _begins_key(words[0]) else 0)


def digest(canonical_key: str, secret: bytes) -> bytes:
    """What the database stores: HMAC-SHA256 of the canonical key under the server's secret."""
    return hmac.new(secret, canonical_key.encode(), hashlib.sha256).digest()


def display_prefix(canonical_key: str) -> str:
    """What listings show, `TXS-` and 4 symbols: enough to tell keys apart, far too little to guess one."""
    return canonical_key[: len(PREFIX) + 1 + DISPLAY_SYMBOLS]
