"""`timex-licensing`: serve, migrate, mint tokens, and a few ops shortcuts."""

import argparse
import asyncio
import copy
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from service.settings import get_settings

if TYPE_CHECKING:
    from datetime import datetime

    from cryptography import x509

    from service.driver import Driver  # imported where used: `serve` need not load the database's modules
    from service.settings import Settings
    from service.trust import Root

T = TypeVar("T")

# The service writes its own JSON access log (service.access) and business events (service.events),
# one line each, to stderr; uvicorn's own access log would repeat the first.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(message)s"},
        "plain": {"format": "%(levelname)s %(name)s trace=%(trace_id)s: %(message)s"},
    },
    # The JSON lines carry their request's `trace_id` themselves; the plain ones get it from the filter.
    "filters": {"trace": {"()": "service.tracing.LogFilter"}},
    "handlers": {
        "lines": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"},
        "plain": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["trace"],
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "service.access": {"handlers": ["lines"], "level": "INFO", "propagate": False},
        "service.events": {"handlers": ["lines"], "level": "INFO", "propagate": False},
        "service": {"handlers": ["plain"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["plain"], "level": "INFO", "propagate": False},
    },
}


def _serve(args: argparse.Namespace) -> None:
    import logging.config as logging_config
    import os
    import signal

    import uvicorn

    from service import embedded, trust
    from service.clock import Clock

    settings = get_settings()
    settings.check_production()
    # The embedded server is started (and migrated) once, here; every worker process is handed its URL.
    os.environ["DATABASE_URL"] = embedded.url_for(settings)
    # uvicorn stops gracefully on SIGTERM, then raises it again with the handler found before it: with the default
    # one the process would die at once, and the embedded server would not be told that this command is done.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging = copy.deepcopy(LOGGING)
    if args.no_access_log:
        logging["loggers"]["service.access"]["level"] = "WARNING"
    if settings.root_certificate is None:
        # Made here, once, before the workers start, and said at start-up (each worker says it again when it first
        # signs).
        logging_config.dictConfig(logging)
        trust.development_root(settings.dev_root_dir, Clock(settings.zone).now())
    # proxy_headers=False: whose X-Forwarded-For to believe is TRUSTED_PROXIES' to say (`deps.client_address`);
    # uvicorn's own handling would believe it from any peer on 127.0.0.1, before the service sees the peer.
    uvicorn.run(
        "service.http.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        access_log=False,
        log_config=logging,
        proxy_headers=False,
    )


def _migrate(args: argparse.Namespace) -> None:
    from service import embedded, migrate

    settings = get_settings()
    url = settings.database_direct_url or embedded.url_for(settings)  # past the pooler, when there is one
    if args.revision.startswith("-") or args.down:
        migrate.downgrade(url, args.revision)
    else:
        migrate.upgrade(url, args.revision)


def _token(args: argparse.Namespace) -> None:
    from service.auth import TokenSettings, issue_token
    from service.clock import Clock

    settings = get_settings()
    now = Clock(settings.zone).now()
    print(issue_token(TokenSettings.of(settings), args.role, args.subject, now, timedelta(minutes=args.minutes)))


def _on_database(work: "Callable[[Driver], Awaitable[T]]") -> T:
    """One task on the settings' database, on a pool of one connection."""
    from service import embedded
    from service.driver import create_driver

    settings = get_settings()
    url = embedded.url_for(settings)

    async def run() -> T:
        driver = create_driver(url, pool_size=1, transaction_pooler=settings.database_transaction_pooler)
        try:
            return await work(driver)
        finally:
            await driver.close()

    return asyncio.run(run())


def _issue_keys(args: argparse.Namespace) -> None:
    from service import keys

    secret = get_settings().key_hash_secret.encode()
    issued_keys = _on_database(
        lambda driver: keys.issue(driver=driver, count=args.count, secret=secret, reseller_id=args.reseller_id)
    )
    for issued in issued_keys:
        print(json.dumps({"key_id": str(issued.id), "key": issued.key}))


def _create_user(args: argparse.Namespace) -> int:
    from service import users
    from service.audit import Actor
    from service.clock import Clock
    from service.errors import DomainError

    settings = get_settings()
    try:
        invitation = _on_database(
            lambda driver: users.invite(
                driver=driver,
                actor=Actor(name="cli", address="local"),
                username=args.username,
                role=args.role,
                reseller_id=args.reseller_id,
                now=Clock(settings.zone).now(),
                setup_lifetime=timedelta(hours=settings.cabinet_setup_hours),
            )
        )
    except DomainError as refusal:
        print(f"{refusal.code}: {refusal}", file=sys.stderr)
        return 1
    base = settings.cabinet_url or f"http://{settings.host}:{settings.port}"
    print(f"user {invitation.user.username} ({invitation.user.role}) created; it sets its password at:")
    print(f"{base.rstrip('/')}{users.setup_path(invitation.setup_token)}")
    return 0


def _worker(args: argparse.Namespace) -> None:
    import logging.config
    import signal

    from service import embedded
    from service.clock import Clock
    from service.delivery import Worker
    from service.driver import create_driver
    from service.http import events

    settings = get_settings()
    logging.config.dictConfig(LOGGING)
    url = embedded.url_for(settings)

    async def run() -> None:
        driver = create_driver(url, pool_size=2, transaction_pooler=settings.database_transaction_pooler)
        worker = Worker(driver=driver, clock=Clock(settings.zone), settings=settings, render=events.render)
        stop = asyncio.Event()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
        try:
            await worker.run(stop)
        finally:
            await worker.close()
            await driver.close()

    asyncio.run(run())


def _worker_alive(args: argparse.Namespace) -> int:
    from service import heartbeat

    path = get_settings().webhook_worker_heartbeat_file
    age = heartbeat.age(path)
    if age is None:
        print(f"no heartbeat at {path}: no pass of a worker's loop has completed since it started", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"the worker's last pass completed {age:.0f} s ago (more than {args.max_age:g} s)", file=sys.stderr)
        return 1
    return 0


def _openapi(args: argparse.Namespace) -> None:
    from service.http.openapi import document

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(document())
    print(f"wrote {args.output}", file=sys.stderr)


def _verify(args: argparse.Namespace) -> int:
    from service import ledger

    findings = _on_database(lambda driver: ledger.verify(driver=driver))
    for finding in findings:
        if isinstance(finding, ledger.Drift):
            stored, ledger_gives = finding.stored, finding.ledger
            print(
                f"{finding.code}: stored {stored.months} months ({stored.bonus_months} bonus) to {stored.support_end}, "
                f"ledger gives {ledger_gives.months} ({ledger_gives.bonus_months} bonus) to {ledger_gives.support_end}"
            )
        else:
            print(
                f"{finding.code}: activation {finding.activation_id} of {finding.activated_on} "
                "leaves support lapsed where it stands in the ledger (R6 would have refused it)"
            )
    print(
        f"{len(findings)} finding(s): installations that differ from their ledger, impossible activations",
        file=sys.stderr,
    )
    return 1 if findings else 0


def _root_with_key(settings: "Settings", root_key: str | None, now: "datetime") -> "Root":
    """The configured root (`ROOT_CERTIFICATE`, or the development root), with `root_key` to certify with."""
    from service.trust import configured_root

    root = configured_root(settings.root_certificate, settings.dev_root_dir, now)
    if root_key is not None:
        root = root.with_key(Path(root_key).read_bytes())
    elif root.key is None:
        raise ValueError("--root-key is needed: the root's private key certifies the new signing key")
    return root


def _rotate_signing_key(args: argparse.Namespace) -> int:
    from service import errors, signing_keys
    from service.clock import Clock

    settings = get_settings()
    if settings.certificate_private_key is not None:
        print("the signing key is CERTIFICATE_PRIVATE_KEY: change that setting to change it", file=sys.stderr)
        return 1
    clock = Clock(settings.zone)
    try:
        root = _root_with_key(settings, args.root_key, clock.now())
        rotation = _on_database(
            lambda driver: signing_keys.rotate(
                driver=driver,
                secret=settings.certificate_key_secret,
                root=root,
                timing=signing_keys.Timing.of(settings),
                clock=clock,
                immediately=args.now,
            )
        )
        # Each rotation brings the revocation list up to date: there is one to serve from the first certified key.
        _on_database(lambda driver: signing_keys.publish_revocations(driver=driver, root=root, now=clock.now()))
    except (ValueError, errors.RotationUnderWay) as refusal:
        print(f"not rotated: {refusal}", file=sys.stderr)
        return 1
    print(json.dumps({"signing": rotation.signing, "signs_from": rotation.signs_from.isoformat()}))
    if args.now:
        print(
            "emergency rotation: the new key signs at once, before every process and JWKS cache has it (see "
            "docs/certificates.md); a verifier with the root is not affected",
            file=sys.stderr,
        )
    return 0


def _certify_signing_key(args: argparse.Namespace) -> int:
    """On the machine that holds the root's key, with no database: the certificate of the key that the cabinet
    prepared a rotation with, from its request, as `rotate-signing-key` certifies a key it makes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from service import trust
    from service.clock import Clock
    from service.signing_keys import Timing

    settings = get_settings()
    now = Clock(settings.zone).now()
    try:
        root = _root_with_key(settings, args.root_key, now)
        request = trust.load_request(Path(args.request).read_bytes())
        der = root.certify_request(request, *Timing.of(settings).validity(now, None))
    except (OSError, ValueError) as refusal:
        print(f"not certified: {refusal}", file=sys.stderr)
        return 1
    certificate = x509.load_der_x509_certificate(der)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    if args.out is None:
        sys.stdout.write(pem.decode())
    else:
        Path(args.out).write_bytes(pem)
    [kid] = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    print(
        f"certified the signing key {kid.value!s} until {certificate.not_valid_after_utc.isoformat()}: paste the "
        "certificate into the cabinet's Signing keys page",
        file=sys.stderr,
    )
    return 0


def _revoke_signing_key(args: argparse.Namespace) -> int:
    from service import signing_keys
    from service.clock import Clock

    settings = get_settings()
    clock = Clock(settings.zone)
    since = None if args.since is None else _instant(args.since)
    try:
        root = _root_with_key(settings, args.root_key, clock.now())
        revocation = _on_database(
            lambda driver: signing_keys.revoke(
                driver=driver,
                secret=settings.certificate_key_secret,
                root=root,
                timing=signing_keys.Timing.of(settings),
                clock=clock,
                kid=args.kid,
                since=since,
            )
        )
    except (ValueError, signing_keys.SigningKeyNotFound) as refusal:
        print(f"not revoked: {refusal}", file=sys.stderr)
        return 1
    if args.out is not None:
        Path(args.out).write_bytes(revocation.crl)
    replacement = revocation.replacement
    print(
        json.dumps(
            {
                "revoked": args.kid,
                "revocation_list": revocation.number,
                "signing": None if replacement is None else replacement.signing,
            }
        )
    )
    return 0


def _instant(text: str) -> "datetime":
    """An ISO 8601 instant (UTC when it names no offset), or a date: its first instant, UTC."""
    from datetime import UTC, datetime

    instant = datetime.fromisoformat(text)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _init_root(args: argparse.Namespace) -> int:
    from service import trust
    from service.clock import Clock

    directory = Path(args.out)
    try:
        trust.write_root(directory, args.name, Clock(get_settings().zone).now())
    except FileExistsError as refusal:
        print(f"no root made: {refusal}", file=sys.stderr)
        return 1
    print(
        f"wrote {directory / trust.ROOT_CERTIFICATE_FILE} (ship it in Timex; ROOT_CERTIFICATE) and "
        f"{directory / trust.ROOT_KEY_FILE} (keep it offline: it certifies signing keys)",
        file=sys.stderr,
    )
    return 0


def _verify_certificate(args: argparse.Namespace) -> int:
    from cryptography import x509

    from service import verification
    from service.clock import Clock

    on = Clock(get_settings().zone).now() if args.on is None else _instant(args.on)
    try:
        token = Path(args.file).read_text(errors="replace")
        root = x509.load_pem_x509_certificate(Path(args.root).read_bytes())
        revocation_list = None if args.revocations is None else _revocation_list(Path(args.revocations).read_bytes())
    except (OSError, ValueError) as unreadable:
        print(f"unreadable: {unreadable}", file=sys.stderr)
        return 1
    try:
        claims = verification.verify(
            token, root=root, on=on, installation=args.installation, revocation_list=revocation_list
        )
    except verification.Rejected as rejected:
        print(f"{rejected.reason}: {rejected}", file=sys.stderr)
        return 1
    print(json.dumps(claims, indent=2))
    return 0


def _revocation_list(data: bytes) -> "x509.CertificateRevocationList":
    from cryptography import x509

    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _purge_idempotency_keys(args: argparse.Namespace) -> None:
    from service import idempotency
    from service.clock import Clock

    now = Clock(get_settings().zone).now()
    purged = _on_database(lambda driver: idempotency.purge(driver=driver, now=now))
    print(f"{purged} expired idempotency key(s) purged", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="timex-licensing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the HTTP service (on the embedded PostgreSQL, migrated, when DATABASE_URL is not set)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="service processes (default: the WORKERS setting)")
    serve.add_argument("--no-access-log", action="store_true", help="leave out the per-request JSON lines")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema (alembic upgrade head)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--down", action="store_true", help="downgrade to REVISION instead")
    migrate.set_defaults(run=_migrate)

    token = commands.add_parser("token", help="print a signed access token")
    token.add_argument("--role", choices=["admin", "reseller"], required=True)
    token.add_argument("--subject", required=True, help="a name for an admin, the reseller id for a reseller")
    token.add_argument("--minutes", type=int, default=60)
    token.set_defaults(run=_token)

    issue = commands.add_parser("issue-keys", help="issue keys and print them, one JSON object a line")
    issue.add_argument("--count", type=int, required=True)
    issue.add_argument("--reseller-id")
    issue.set_defaults(run=_issue_keys)

    create_user = commands.add_parser(
        "create-user", help="invite a cabinet user (the first admin); prints its one-time setup link last"
    )
    create_user.add_argument("--role", choices=["admin", "reseller"], required=True)
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--reseller-id", type=UUID, help="the reseller a `reseller` user acts for")
    create_user.set_defaults(run=_create_user)

    worker = commands.add_parser(
        "worker", help="deliver webhooks until stopped (SIGTERM); run as many as wanted, beside `serve`"
    )
    worker.set_defaults(run=_worker)

    worker_alive = commands.add_parser(
        "worker-alive",
        help="a liveness probe for `worker`, with no database: exit 0 if its loop completed a pass within MAX_AGE "
        "seconds (its heartbeat, WEBHOOK_WORKER_HEARTBEAT_FILE), 1 if not",
    )
    worker_alive.add_argument(
        "--max-age",
        type=float,
        default=300,
        metavar="SECONDS",
        help="default 300: room for a long pass (the day's first announces every support about to end)",
    )
    worker_alive.set_defaults(run=_worker_alive)

    openapi = commands.add_parser("openapi", help="write the OpenAPI document (openapi/openapi.json)")
    openapi.add_argument("--output", default="openapi/openapi.json")
    openapi.set_defaults(run=_openapi)

    verify = commands.add_parser(
        "verify",
        help="recompute every installation from its ledger, checking each activation against R6; exit 1 on a finding",
    )
    verify.set_defaults(run=_verify)

    init_root = commands.add_parser(
        "init-root", help="make the root of trust: DIR/root.pem to ship in Timex, DIR/root-key.pem to keep offline"
    )
    init_root.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) directory")
    init_root.add_argument("--name", default="Timex licensing root", help="the root's common name")
    init_root.set_defaults(run=_init_root)

    rotate = commands.add_parser(
        "rotate-signing-key",
        help="publish a new signing key, certified by the root; it signs once every process and JWKS cache has it, "
        "and the old one keeps verifying until its certificates expire",
    )
    rotate.add_argument(
        "--root-key", metavar="FILE", help="the root's private key (root-key.pem); not needed with the development root"
    )
    rotate.add_argument("--now", action="store_true", help="emergency: the new key signs at once (see the docs)")
    rotate.set_defaults(run=_rotate_signing_key)

    certify = commands.add_parser(
        "certify-signing-key",
        help="on the machine that holds the root's key, with no database: certify the signing key of a rotation "
        "prepared in the cabinet, from its request (CSR); print its certificate (PEM) to paste there",
    )
    certify.add_argument("request", metavar="CSR_FILE", help="the request the cabinet shows (PEM or DER)")
    certify.add_argument(
        "--root-key", metavar="FILE", help="the root's private key (root-key.pem); not needed with the development root"
    )
    certify.add_argument("--out", metavar="FILE", help="write the certificate (PEM) here rather than to stdout")
    certify.set_defaults(run=_certify_signing_key)

    revoke = commands.add_parser(
        "revoke-signing-key",
        help="revoke a compromised signing key: it leaves the JWKS, and a new root-signed revocation list rejects "
        "its certificates; if it was signing, a new key signs at once",
    )
    revoke.add_argument("kid", help="the key's id, after -- (a base64url id may begin with -)")
    revoke.add_argument("--root-key", metavar="FILE", help="the root's private key (root-key.pem)")
    revoke.add_argument(
        "--since", metavar="INSTANT", help="reject only what it signed from then on (default: everything it signed)"
    )
    revoke.add_argument("--out", metavar="FILE", help="also write the revocation list (DER) here")
    revoke.set_defaults(run=_revoke_signing_key)

    verify_certificate = commands.add_parser(
        "verify-certificate",
        help="verify a support certificate offline against the root, as Timex does; print its claims (exit 0) "
        "or why not (exit 1)",
    )
    verify_certificate.add_argument("file")
    verify_certificate.add_argument("--root", required=True, metavar="ROOT_PEM")
    verify_certificate.add_argument("--installation", metavar="CODE")
    verify_certificate.add_argument(
        "--on", metavar="DATE", help="an ISO 8601 instant, or a date (its first instant, UTC); default: now"
    )
    verify_certificate.add_argument("--revocations", metavar="CRL", help="a revocation list (DER or PEM)")
    verify_certificate.set_defaults(run=_verify_certificate)

    purge = commands.add_parser(
        "purge-idempotency-keys", help="delete the idempotency keys (and stored answers) past their lifetime"
    )
    purge.set_defaults(run=_purge_idempotency_keys)

    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
