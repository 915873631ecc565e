"""The service's refusals, each named by its stable `code`, with no HTTP in it.

Most are the request's fault: a broken business rule, a bad credential, an unknown resource, a
malformed key. Two are not, and the client may try again later: `RateLimited` (too many failed
attempts lately from its address or with its client id; try after `retry_after` seconds) and
`Unavailable` (the database cannot be reached, or too many logins are being checked at once;
nothing was written).

The HTTP layer maps each code to a status and an RFC 9457 problem in one place
(`service.http.problems`).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.rules import Quote  # the rules raise these errors: no import at run time


class DomainError(Exception):
    """A refused request (see the module's docstring); mapped to an HTTP problem in one place."""

    code = "domain_error"
    title = "Request refused"

    def __init__(self, detail: str | None = None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class InvalidRequest(DomainError):
    code = "invalid_request"
    title = "The request is not valid"


class PurchaseInFuture(InvalidRequest):
    title = "A purchase date cannot be in the future"


class PurchaseTooOld(InvalidRequest):
    title = "A reseller cannot register a sale this old"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Not allowed"


class InstallationNotFound(DomainError):
    code = "installation_not_found"
    title = "No such installation"


class KeyRefused(DomainError):
    """A refusal of one key of a request: `index` is its position in the request (from 0) and `prefix` its
    display prefix (`TXS-` and 4 symbols, never the whole key), where the request had several and it is known
    which one; a malformed key has no prefix (it is not a key)."""

    def __init__(self, detail: str | None = None, *, index: int | None = None, prefix: str | None = None):
        super().__init__(detail)
        self.index = index
        self.prefix = prefix


class KeyNotFound(KeyRefused):
    code = "key_not_found"
    title = "No such key"


class ActivationNotFound(DomainError):
    code = "activation_not_found"
    title = "No such activation"


class ResellerNotFound(DomainError):
    code = "reseller_not_found"
    title = "No such reseller"


class InstallationExists(DomainError):
    code = "installation_exists"
    title = "An installation with this code is already registered"


class ResellerExists(DomainError):
    code = "reseller_exists"
    title = "A reseller with this name already exists"


class LicensesInsufficient(DomainError):
    """R6: the keys supplied would not bring support current."""

    code = "licenses_insufficient"
    title = "Not enough licenses to bring support current"

    def __init__(self, required: int, supplied: int):
        super().__init__(f"{supplied} license(s) supplied, {required} required")
        self.required = required
        self.supplied = supplied
        self.quote: Quote | None = None  # attached by the service layer for the response body


class KeyAlreadyUsed(KeyRefused):
    code = "key_already_used"
    title = "The key was already used"


class KeyRevoked(KeyRefused):
    code = "key_revoked"
    title = "The key was revoked"


class KeyDuplicated(KeyRefused):
    code = "key_duplicated"
    title = "The same key appears twice in the request"


class KeyMalformed(KeyRefused):
    code = "key_malformed"
    title = "The key is not a valid Timex Support key: check it for typos."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for another request"


class IdempotencyKeyInFlight(DomainError):
    code = "idempotency_key_in_flight"
    title = "A request with this Idempotency-Key is still being answered; try again shortly"


class RateLimited(DomainError):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int):
        super().__init__(f"Try again in {retry_after} seconds")
        self.retry_after = retry_after


class Unavailable(DomainError):
    code = "unavailable"
    title = "The service is temporarily unavailable; nothing was written"
