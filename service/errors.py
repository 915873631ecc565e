"""The service's refusals, each named by its stable `code`, with no HTTP in it.

Most are the request's fault: a broken business rule, a bad credential, an unknown resource, a
malformed key. Two are not, and the client may try again later: `RateLimited` (too many failed
attempts lately from its address or with its client id; try after `retry_after` seconds) and
`Unavailable` (the database cannot be reached, or too many logins are being checked at once;
nothing was written).

Each class that names a code says, beside it, the HTTP status it is answered with and the example the API
document shows of it (`status`, `example`): adding a code is one edit, and a class that names a code without
them is refused when this module is imported. The HTTP layer turns an error into an RFC 9457 problem in one place
(`service.http.problems`), in the client's language: every title and detail here is an English message id
(marked `N_` for Babel's extraction) with `%(name)s` placeholders, filled from the error's `params` there.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from service.examples import EXAMPLE_ACTIVATION_ID, QUOTE_EXAMPLE

if TYPE_CHECKING:
    from service.rules import Quote  # the rules raise these errors: no import at run time


def N_(message: str) -> str:
    """Marks `message` for the catalogues (`scripts/messages`); it is translated where it is shown."""
    return message


@dataclass(frozen=True)
class Example:
    """What the API document shows of a code: the problem's English `detail`, and its members beside the five of
    every problem."""

    detail: str
    members: Mapping[str, Any] = field(default_factory=dict)


_KEY_EXAMPLE = {"key_index": 1, "key_prefix": "TXS-7QKD"}


class DomainError(Exception):
    """A refused request (see the module's docstring); mapped to an HTTP problem in one place.

    `detail` is a message id, its placeholders filled from `params`; `str()` of the error is its English text."""

    code: ClassVar[str]
    status: ClassVar[int]
    example: ClassVar[Example]
    title = N_("Request refused")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in vars(cls) and not {"status", "example"} <= vars(cls).keys():
            raise TypeError(f"{cls.__name__} names the code {cls.code!r}: give it its `status` and `example` too")

    def __init__(self, detail: str | None = None, **params: object):
        self.message = detail or self.title
        self.params = params
        self.detail = self.message % params if params else self.message
        super().__init__(self.detail)


class InvalidRequest(DomainError):
    code = "invalid_request"
    status = 400
    example = Example("A query parameter is given more than once")
    title = N_("The request is not valid")


class PurchaseInFuture(InvalidRequest):
    title = N_("A purchase date cannot be in the future")


class PurchaseTooOld(InvalidRequest):
    title = N_("A reseller cannot register a sale this old")


class Unauthenticated(DomainError):
    code = "unauthenticated"
    status = 401
    example = Example("The access token is missing, expired or not valid")
    title = N_("Authentication required")


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    example = Example("This operation is for administrators")
    title = N_("Not allowed")


class InstallationNotFound(DomainError):
    code = "installation_not_found"
    status = 404
    example = Example("No installation has the code 'ACME-0001'")
    title = N_("No such installation")


class KeyRefused(DomainError):
    """A refusal of a key of a request, where it is known which: `index` is the position (from 0) of the key the
    problem names (unless given, the first that `refused` refuses with this code), `prefix` its display prefix
    (`TXS-` and 4 symbols, never the whole key; a malformed key has none, it is not a key), and `refused` why each
    key refused is (its position: its code), so that a person can be told which keys to look at."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        index: int | None = None,
        prefix: str | None = None,
        refused: Mapping[int, str] | None = None,
    ):
        super().__init__(detail)
        self.refused = dict(refused or {})
        first = min((position for position, code in self.refused.items() if code == self.code), default=None)
        self.index = first if index is None else index
        self.prefix = prefix


class KeyNotFound(KeyRefused):
    code = "key_not_found"
    status = 404
    example = Example("No such key", _KEY_EXAMPLE)
    title = N_("No such key")


class ActivationNotFound(DomainError):
    code = "activation_not_found"
    status = 404
    example = Example("No such activation")
    title = N_("No such activation")


class ResellerNotFound(DomainError):
    code = "reseller_not_found"
    status = 404
    example = Example("No such reseller")
    title = N_("No such reseller")


class WebhookUrlRefused(InvalidRequest):
    title = N_("The webhook URL is not one the service sends to")


class WebhookEndpointNotFound(DomainError):
    code = "webhook_endpoint_not_found"
    status = 404
    example = Example("No such webhook endpoint")
    title = N_("No such webhook endpoint")


class WebhookDeliveryNotFound(DomainError):
    code = "webhook_delivery_not_found"
    status = 404
    example = Example("No such webhook delivery")
    title = N_("No such webhook delivery")


class RevocationListNotFound(DomainError):
    code = "revocation_list_not_found"
    status = 404
    example = Example("No revocation list has been published yet")
    title = N_("No revocation list has been published yet")


class InstallationExists(DomainError):
    code = "installation_exists"
    status = 409
    example = Example("An installation with this code is already registered")
    title = N_("An installation with this code is already registered")


class ResellerExists(DomainError):
    code = "reseller_exists"
    status = 409
    example = Example("A reseller with this name already exists")
    title = N_("A reseller with this name already exists")


class LicensesInsufficient(DomainError):
    """R6: the keys supplied would not bring support current."""

    code = "licenses_insufficient"
    status = 402
    example = Example("1 license(s) supplied, 2 required", {"quote": QUOTE_EXAMPLE})
    title = N_("Not enough licenses to bring support current")

    def __init__(self, required: int, supplied: int):
        super().__init__(
            N_("%(supplied)d license(s) supplied, %(required)d required"), supplied=supplied, required=required
        )
        self.required = required
        self.supplied = supplied
        self.quote: Quote | None = None  # attached by the service layer for the response body


class KeyAlreadyUsed(KeyRefused):
    code = "key_already_used"
    status = 409
    example = Example("The key was already used", _KEY_EXAMPLE)
    title = N_("The key was already used")


class VoidHasDependents(DomainError):
    """Later live activations were computed on the one to void: voiding it alone would leave them standing on
    support that no longer was (R6). The request may ask to void them too (`cascade`)."""

    code = "void_has_dependents"
    status = 409
    example = Example(
        "1 later live activation(s) were computed on this one: void them too (cascade)",
        {"dependents": [EXAMPLE_ACTIVATION_ID]},
    )
    title = N_("Later activations depend on this one")

    def __init__(self, dependents: list[UUID]):
        super().__init__(
            N_("%(count)s later live activation(s) were computed on this one: void them too (cascade)"),
            count=len(dependents),
        )
        self.dependents = dependents


class KeyRevoked(KeyRefused):
    code = "key_revoked"
    status = 409
    example = Example("The key was revoked", {"key_index": 0, "key_prefix": "TXS-7QKD"})
    title = N_("The key was revoked")


class KeyDuplicated(KeyRefused):
    code = "key_duplicated"
    status = 409
    example = Example("The same key appears twice in the request", {"key_index": 2, "key_prefix": "TXS-7QKD"})
    title = N_("The same key appears twice in the request")


class KeyMalformed(KeyRefused):
    code = "key_malformed"
    status = 422
    example = Example("The key is not a valid Timex Support key: check it for typos.", {"key_index": 1})
    title = N_("The key is not a valid Timex Support key: check it for typos.")


class UserNotFound(DomainError):
    code = "user_not_found"
    status = 404
    example = Example("No such user")
    title = N_("No such user")


class UserExists(DomainError):
    code = "user_exists"
    status = 409
    example = Example("A user with this username already exists")
    title = N_("A user with this username already exists")


class SetupLinkInvalid(DomainError):
    code = "setup_link_invalid"
    status = 404
    example = Example("This setup link is not valid: it was used, it expired, or it was never given")
    title = N_("This setup link is not valid: it was used, it expired, or it was never given")


class SigningKeyGiven(InvalidRequest):
    title = N_("The signing key is the CERTIFICATE_PRIVATE_KEY setting: it changes by changing that setting")


class SigningKeyNotPrepared(DomainError):
    code = "signing_key_not_prepared"
    status = 404
    example = Example("No signing key is prepared for a rotation: it was published or discarded")
    title = N_("No signing key is prepared for a rotation: it was published or discarded")


class RotationUnderWay(DomainError):
    """A rotation's new key does not sign yet: another rotation now would retire it unused (an emergency may)."""

    code = "signing_key_rotation_under_way"
    status = 409
    example = Example("The key 3sZ5rYFJ7n6AqQ0i0qjz2Y9cYz4mB2uYc7V2dJ9kq1M signs from 2026-12-05T10:02:00+00:00")
    title = N_("A rotation is under way: its new key does not sign yet")


class SigningKeyCertificateRefused(DomainError):
    """A certificate given for the prepared signing key that the service would not sign with: it checks what it
    checks of every key it loads, and what a verifier checks of a key's certificate."""

    code = "signing_key_certificate_refused"
    status = 422
    example = Example("The certificate is not signed by the root this service trusts")
    title = N_("The certificate does not certify the prepared key for signing")


class CertificateUnreadable(SigningKeyCertificateRefused):
    title = N_("This is not an X.509 certificate in PEM (-----BEGIN CERTIFICATE-----)")


class CertificateNotByRoot(SigningKeyCertificateRefused):
    title = N_("The certificate is not signed by the root this service trusts")


class CertificateForAnotherKey(SigningKeyCertificateRefused):
    title = N_("The certificate is of another key than the one prepared")


class CertificateNotForSigning(SigningKeyCertificateRefused):
    title = N_("The certificate does not certify a P-256 key for signatures only: make it with certify-signing-key")


class CertificateExpired(SigningKeyCertificateRefused):
    title = N_(
        "The certificate is not valid when the key would first sign, or ends before it could: certify the request again"
    )


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    example = Example("This Idempotency-Key was used for another request")
    title = N_("This Idempotency-Key was used for another request")


class IdempotencyKeyInFlight(DomainError):
    code = "idempotency_key_in_flight"
    status = 409
    example = Example("A request with this Idempotency-Key is still being answered; try again shortly")
    title = N_("A request with this Idempotency-Key is still being answered; try again shortly")


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429
    example = Example("Try again in 840 seconds")
    title = N_("Too many requests")

    def __init__(self, retry_after: int):
        super().__init__(N_("Try again in %(seconds)d seconds"), seconds=retry_after)
        self.retry_after = retry_after


class Unavailable(DomainError):
    code = "unavailable"
    status = 503
    example = Example("The service is temporarily unavailable; nothing was written")
    title = N_("The service is temporarily unavailable; nothing was written")


class NoSigningKey(Unavailable):
    """No signing key certified by the root of trust may sign now: none is, or its certificate ends too soon for a
    certificate signed now. The operator is told in the log (`service.signing_keys`)."""
