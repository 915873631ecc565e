"""Time-based one-time passwords (RFC 6238, on HOTP, RFC 4226): HMAC-SHA1, 30-second steps, 6 digits, what every
authenticator app reads from an `otpauth://` link or its base32 secret. Pure functions on instants; the secret at
rest is sealed (AES-GCM under a key derived from `KEY_HASH_SECRET`, bound to its user) by `SecretBox`."""

import base64
import hashlib
import hmac
import os
import struct
from datetime import datetime
from urllib.parse import quote
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1
"""Steps either side of now a code is also taken from: a phone's clock a little off."""
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def text_of(secret: bytes) -> str:
    """The secret as an app takes it typed in: base32, no padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def secret_of(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def step_of(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: bytes, step: int, digits: int = DIGITS) -> str:
    """HOTP (RFC 4226 §5.3) of the step's counter."""
    digest = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def matching_step(secret: bytes, code: str, now: datetime) -> int | None:
    """The step within `WINDOW` of now whose code this is, or None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_of(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), code):
            return step
    return None


def provisioning_uri(secret: bytes, username: str, issuer: str) -> str:
    """The `otpauth://` link an authenticator app takes (Key Uri Format)."""
    label = quote(f"{issuer}:{username}")
    return (
        f"otpauth://totp/{label}?secret={text_of(secret)}&issuer={quote(issuer)}&digits={DIGITS}&period={STEP_SECONDS}"
    )


class SecretBox:
    """Seals a user's TOTP secret for the database, bound to that user: a sealed secret copied to another user's
    row does not open."""

    def __init__(self, key_secret: bytes):
        self._aead = AESGCM(HKDF(SHA256(), 32, salt=None, info=b"timex-licensing cabinet totp").derive(key_secret))

    def seal(self, secret: bytes, user_id: UUID) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret, user_id.bytes)

    def open(self, sealed: bytes, user_id: UUID) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], user_id.bytes)
