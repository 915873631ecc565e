"""The tables. Installations hold their support as anchor + months (R2); activations are the
append-only ledger that explains every month of it."""

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KEY_STATUSES = ("issued", "used", "revoked")

KEY_ACTIVATION_FK = "fk_license_keys_activation_id_activations"
"""A used key's activation must exist. The one-statement activation (`activations._record_in_one_statement`)
rests on it: keys taken without their ledger row break it, so the statement writes everything or nothing."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Instants are timezone-aware UTC on the way in and out: a naive one is refused, not taken for local time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: instants must be timezone-aware")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _id_column() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(UtcDateTime(), server_default=func.now())


class Reseller(Base):
    __tablename__ = "resellers"

    id: Mapped[uuid.UUID] = _id_column()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created_at()
    # Set while an admin has it disabled: its tokens are refused at once, and it gets no new ones.
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Set by a secret rotation: a token issued (`iat`) before this instant is refused, whatever its `exp`.
    tokens_valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Set by a rotation with a grace period: the secret before it still logs in until `previous_secret_until`.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(255))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resellers.id"))
    anchor: Mapped[date] = mapped_column(Date)
    initial_months: Mapped[int] = mapped_column(Integer)
    months: Mapped[int] = mapped_column(Integer)
    bonus_months: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created_at()

    # Its support end is kept apart (`SupportEnd`), and no column an activation changes is indexed here, so that
    # an activation's update of the row is a HOT update (no index entry written), on pages kept 10 % free for
    # them (fillfactor 90, set by migration 0011).
    __table_args__ = (
        CheckConstraint("initial_months >= 0", name="initial_months_not_negative"),
        CheckConstraint("months >= initial_months", name="months_not_below_initial"),
    )


class SupportEnd(Base):
    """An installation's support end: anchor + months (R2), computed by the rules and written with every change of
    its `months`, and its reseller, as the installation's. Stored so that the renewal pipeline and the support
    notices filter and order by it on an index; kept apart from the installation's row, whose updates then write
    no index entry."""

    __tablename__ = "support_ends"

    installation_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("installations.id"), primary_key=True)
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resellers.id"))
    support_end: Mapped[date] = mapped_column(Date)

    __table_args__ = (
        # The pipeline's order (support end, then installation), for an admin and for one reseller; the second
        # also serves the foreign key's lookups by reseller.
        Index("ix_support_ends_support_end_installation_id", "support_end", "installation_id"),
        Index(
            "ix_support_ends_reseller_id_support_end_installation_id", "reseller_id", "support_end", "installation_id"
        ),
    )


class Activation(Base):
    """One ledger entry: which keys an installation activated on which day, and what it gave."""

    __tablename__ = "activations"

    id: Mapped[uuid.UUID] = _id_column()
    installation_id: Mapped[int] = mapped_column(ForeignKey("installations.id"), index=True)
    activated_on: Mapped[date] = mapped_column(Date)
    licenses: Mapped[int] = mapped_column(Integer)
    months_before: Mapped[int] = mapped_column(Integer)
    months_added: Mapped[int] = mapped_column(Integer)
    bonus_months: Mapped[int] = mapped_column(Integer)
    support_end_before: Mapped[date] = mapped_column(Date)
    support_end_after: Mapped[date] = mapped_column(Date)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    voided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    void_reason: Mapped[str | None] = mapped_column(String(500))
    certificate: Mapped[str | None] = mapped_column(Text)
    # Its keys, in the order the request gave them: how the keys of an activation are found, so that no index on
    # the keys names their activation and a key's update by its activation is HOT (migration 0018).
    key_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))

    __table_args__ = (
        CheckConstraint("licenses >= 1", name="licenses_positive"),
        CheckConstraint("cardinality(key_ids) = licenses", name="lists_its_keys"),
        # The order GET /v1/activations lists the ledger in, across installations.
        Index("ix_activations_created_at_id", "created_at", "id"),
    )


class LicenseKey(Base):
    """A key, known only by its keyed hash; the plaintext is shown once when issued."""

    __tablename__ = "license_keys"

    id: Mapped[uuid.UUID] = _id_column()
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    # Not indexed: no query finds keys by it alone (the list walks the keys in id order), and an index on it
    # would be written again by every activation of a key.
    status: Mapped[str] = mapped_column(String(16), default="issued")
    # Its name is KEY_ACTIVATION_FK (the naming convention makes it): the one-statement activation's
    # all-or-nothing rests on this foreign key. Not indexed: an activation lists its keys (`Activation.key_ids`),
    # and an index on it would be written again by every activation of a key. So an activation's update of its
    # keys is HOT, on pages kept 20 % free for them (fillfactor 80, set by migration 0018).
    activation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("activations.id"))
    created_at: Mapped[datetime] = _created_at()
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint(f"status IN {KEY_STATUSES!r}", name="status_known"),
        CheckConstraint("status <> 'used' OR activation_id IS NOT NULL", name="used_has_activation"),
    )


class SigningKey(Base):
    """A key that signs (or signed) support certificates: one key set per deployment, shared by every process.
    The private key is stored encrypted under `CERTIFICATE_KEY_SECRET` (see `service.signing_keys`).

    Keys follow one another by `generation` (unique: two rotations at once cannot both add the next key). The key
    that signs at an instant is the newest whose `signs_from` has come; a key published but not yet scheduled has
    none. `certificate` is the key's X.509 certificate (DER), signed by the root of trust."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    signs_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """Certificates the key signed from this instant on are rejected (a compromise is known to start here)."""

    __table_args__ = (CheckConstraint("(revoked_at IS NULL) = (revoked_since IS NULL)", name="revoked_since_when"),)


class PendingSigningKey(Base):
    """A signing key made for a rotation prepared from the cabinet, waiting for its certificate by the root (which is
    made offline, from `request`): not in `signing_keys`, so nothing publishes it or signs with it until the
    certificate comes back and it moves there (`service.signing_keys.publish_prepared`). One at a time."""

    __tablename__ = "pending_signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    """Encrypted as `signing_keys.private_key` is."""
    request: Mapped[bytes] = mapped_column(LargeBinary)
    """The PKCS #10 certificate signing request (DER) the root's holder certifies, signed by the key itself."""
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (CheckConstraint("id = 1", name="one_at_a_time"),)


class RevocationList(Base):
    """A root-signed X.509 CRL of the revoked signing keys, as made by `revoke-signing-key`; the newest is served."""

    __tablename__ = "revocation_lists"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    crl: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()


class IdempotencyKey(Base):
    """A caller's `Idempotency-Key`: claimed by the first request that carries it, then holding that request's
    answer (encrypted) until `expires_at`."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(Text, primary_key=True)  # whose key: `admin:<subject>` or `reseller:<id>`
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    claim: Mapped[uuid.UUID] = mapped_column(Uuid)  # which attempt holds it: a taken-over claim stores nothing
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    status: Mapped[int | None] = mapped_column(Integer)  # null while the first request is in flight
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # AES-GCM: nonce, then ciphertext and tag


class WebhookEndpoint(Base):
    """Where a reseller (or, with no reseller, the operator: every reseller's events) wants events sent."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = _id_column()
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # A JSON list of event types; NULL for every type, those added later included.
    event_types: Mapped[str | None] = mapped_column(Text)
    # Kept as it is, since every delivery is signed with it (HMAC): it is shown once, and never again.
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Set when a delivery ran out of attempts; cleared by the next delivery that succeeds.
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WebhookEvent(Base):
    """The outbox: an event, written in the transaction of the change it reports, then fanned out to the
    endpoints that want it (`dispatched_at`)."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Whose event it is: the reseller of the installation or key it is about (NULL: the operator's own).
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The body as it is sent (`webhooks.envelope`), written once at the change.
    body: Mapped[str | None] = mapped_column(Text)
    # Events queued before bodies were stored (migration 0010): the service's values (JSON) their body is written
    # from at delivery, as the version that queued them wrote it.
    legacy_data: Mapped[str | None] = mapped_column(Text)
    # For the events found from an installation's support end: which support period they are about. The
    # unique index makes each emitted once, whichever worker finds it first; it holds those events only, so
    # that an activation's event costs its statement no entry in it.
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    period_end: Mapped[date | None] = mapped_column(Date)
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    # The `traceparent` of the request that made the change (W3C Trace Context), sent on with its deliveries.
    traceparent: Mapped[str | None] = mapped_column(String(55))

    __table_args__ = (
        CheckConstraint("(body IS NULL) <> (legacy_data IS NULL)", name="body_or_legacy_data"),
        Index(
            "uq_webhook_events_period",
            "installation_id",
            "type",
            "period_end",
            unique=True,
            postgresql_where=text("period_end IS NOT NULL"),
        ),
    )


DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookDelivery(Base):
    """One event for one endpoint: pending until delivered, or failed once out of attempts."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = _id_column()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    # When it is next due; a worker that claims it moves this on by its lease, so no other takes it meanwhile.
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    # The start of the receiver's last answer, no more: a receiver's body is its own business.
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint(f"status IN {DELIVERY_STATUSES!r}", name="status_known"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )


USER_ROLES = ("admin", "reseller")


class User(Base):
    """A person who signs in to the cabinet: staff (an admin) or someone acting for one reseller."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id_column()
    username: Mapped[str] = mapped_column(String(64), unique=True)  # folded to lower case
    role: Mapped[str] = mapped_column(String(16))
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    # scrypt, as client secrets are; NULL until the user follows the setup link.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # The setup link's token, known only by its SHA-256: shown once, good until `setup_expires_at`, then NULL.
    setup_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    setup_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The TOTP secret (RFC 6238), sealed (`totp.SecretBox`); NULL until the user sets up two-step sign-in. The last
    # step a code was taken for: a code is good once.
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint(f"role IN {USER_ROLES!r}", name="role_known"),
        CheckConstraint("(role = 'admin') = (reseller_id IS NULL)", name="reseller_for_reseller_role"),
    )


class CabinetSession(Base):
    """A signed-in browser. The cookie holds a random token; the table only its SHA-256."""

    __tablename__ = "cabinet_sessions"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditEvent(Base):
    """Who did what, when, from where: one row per action taken in the cabinet (and on users by the API)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # NULL: an API token's admin, or nobody signed in
    actor: Mapped[str] = mapped_column(String(100))  # the username, or `token:<subject>`, as it was then
    reseller_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)  # whose business the action was
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[str | None] = mapped_column(Text)  # JSON
    address: Mapped[str] = mapped_column(String(64))
