"""The format of Timex Support keys: `TXS-XXXXX-XXXXX-XXXXX-XXXXX`.

Twenty Crockford base32 symbols: 18 random (90 bits from `secrets`) and 2 check symbols of a
Reed–Solomon code over GF(32). The code has minimum distance 3, so any single mistyped symbol and
any swap of two neighbouring symbols is caught here, without a database lookup. The database
keeps only an HMAC of the canonical key and a short prefix for listings.
"""

import hashlib
import hmac
import secrets

from service.errors import KeyMalformed

PREFIX = "TXS"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DATA_SYMBOLS = 18
CHECK_SYMBOLS = 2
GROUP = 5
MAX_INPUT = 100
DISPLAY_SYMBOLS = 4

_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_VALUE.update({"O": 0, "I": 1, "L": 1})  # Crockford: read the look-alikes as what they look like
_IGNORED = str.maketrans("", "", " -\t\r\n")

# GF(32) with the primitive polynomial x^5 + x^2 + 1.
_EXP = [0] * 62
_LOG = [0] * 32
_x = 1
for _i in range(31):
    _EXP[_i] = _EXP[_i + 31] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0b100000:
        _x ^= 0b100101


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


# g(x) = (x - α)(x - α²) = x² + (α + α²)x + α³ in characteristic 2.
_G1, _G0 = _EXP[1] ^ _EXP[2], _EXP[3]


def _check(data: list[int]) -> list[int]:
    """The remainder of data(x)·x² divided by g(x): the two check symbols (systematic encoding)."""
    r1 = r0 = 0
    for symbol in data:
        feedback = symbol ^ r1
        r1 = r0 ^ _mul(feedback, _G1)
        r0 = _mul(feedback, _G0)
    return [r1, r0]


def _format(values: list[int]) -> str:
    symbols = "".join(ALPHABET[v] for v in values)
    return "-".join([PREFIX, *(symbols[i:i + GROUP] for i in range(0, len(symbols), GROUP))])


def generate() -> str:
    return from_data([secrets.randbelow(32) for _ in range(DATA_SYMBOLS)])


def from_data(data: list[int]) -> str:
    """The key whose 18 data symbols (values 0–31) are `data`, check symbols added."""
    return _format(data + _check(data))


def normalize(text: str) -> str:
    """The canonical form of a key as a person may type it, or `KeyMalformed` (which never quotes it)."""
    if len(text) > MAX_INPUT:
        raise KeyMalformed()
    compact = text.upper().translate(_IGNORED)
    if compact.startswith(PREFIX) and len(compact) == len(PREFIX) + DATA_SYMBOLS + CHECK_SYMBOLS:
        compact = compact[len(PREFIX):]
    if len(compact) != DATA_SYMBOLS + CHECK_SYMBOLS or any(symbol not in _VALUE for symbol in compact):
        raise KeyMalformed()
    values = [_VALUE[symbol] for symbol in compact]
    if _check(values[:DATA_SYMBOLS]) != values[DATA_SYMBOLS:]:
        raise KeyMalformed()
    return _format(values)


def digest(canonical_key: str, secret: bytes) -> bytes:
    """What the database stores: HMAC-SHA256 of the canonical key under the server's secret."""
    return hmac.new(secret, canonical_key.encode(), hashlib.sha256).digest()


def display_prefix(canonical_key: str) -> str:
    """What listings show: enough to tell keys apart, far too little to guess one."""
    return canonical_key[: len(PREFIX) + 1 + DISPLAY_SYMBOLS]
