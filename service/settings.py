"""All configuration, from the environment (or a `.env` file), in one pydantic-settings class.

Every setting has a default that works for the embedded quick start; the README lists them all.
"""

from decimal import Decimal
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-change-me"
SHIPPED_SECRETS = frozenset({DEV_SECRET, "change-me"})
"""What the repository ships for secret settings (the defaults, `compose.env.example`'s): anyone can read them."""
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: str = "development"
    database_url: str | None = None
    """None: the embedded PostgreSQL in `embedded_data_dir` (service.embedded)."""
    embedded_data_dir: Path = Path("timex-data/postgres")
    database_pool_size: int = Field(8, gt=0)
    database_transaction_pooler: bool = False
    database_direct_url: str | None = None
    """PostgreSQL itself, where `migrate` goes when `database_url` is a pooler; None: `database_url`."""
    business_timezone: str = "Europe/Moscow"
    unit_price: Decimal = Field(Decimal("12000.00"), gt=0, decimal_places=2)
    currency: str = Field("RUB", min_length=3, max_length=3)
    jwt_secret: str = DEV_SECRET
    jwt_issuer: str = "timex-licensing"
    jwt_audience: str = "timex-licensing"
    access_token_minutes: int = Field(15, gt=0)
    purchase_max_age_days: int = Field(30, ge=0)
    key_hash_secret: str = DEV_SECRET
    certificate_private_key: str | None = None
    certificate_key_secret: str = DEV_SECRET
    certificate_chain: str | None = None
    certificate_lifetime_days: int = Field(30, gt=0)
    certificate_cache_size: int = Field(20_000, gt=0)
    signing_keys_reload_seconds: int = Field(60, gt=0)
    jwks_max_age_seconds: int = Field(60, ge=0)
    signing_key_period_days: int = Field(365, gt=0)
    root_certificate: str | None = None
    dev_root_dir: Path = Path("timex-data/dev-root")
    redis_url: str | None = None
    redis_timeout_ms: int = Field(50, gt=0)
    activation_failure_limit: int = Field(10, gt=0)
    activation_failure_window_seconds: int = Field(900, gt=0)
    token_failure_limit: int = Field(10, gt=0)
    token_failure_window_seconds: int = Field(900, gt=0)
    token_wide_failure_limit: int = Field(100, gt=0)
    secret_check_concurrency: int = Field(1, gt=0)
    secret_check_queue: int = Field(16, ge=0)
    rate_limit_prefix: str = "timex"
    trusted_proxies: list[str] = []
    metrics_token: str | None = None
    metrics_networks: list[str] = []
    max_body_bytes: int = Field(64 * 1024, gt=0)
    idempotency_ttl_hours: int = Field(24, gt=0)
    default_language: Literal["ru", "en"] = "en"
    page_language: Literal["ru", "en"] = "ru"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, gt=0)
    webhook_allowed_hosts: list[str] = []
    # Browser origins (`https://backoffice.partner.example`, or `*`) that may call the API; none by default.
    cors_allowed_origins: list[str] = []
    # An OpenTelemetry collector's OTLP/HTTP address (`http://collector:4318`): each request's span is exported there.
    otel_exporter_otlp_endpoint: str | None = None
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    webhook_retry_base_seconds: float = Field(5.0, ge=0)
    webhook_max_attempts: int = Field(15, gt=0)
    webhook_expiring_days: int = Field(30, ge=0)
    webhook_poll_seconds: float = Field(1.0, gt=0)
    webhook_worker_in_serve: bool = False
    # Touched after each pass of a worker's loop, for `timex-licensing worker-alive`; /tmp: writable in the image,
    # whose root filesystem is read-only in Kubernetes.
    webhook_worker_heartbeat_file: Path = Path("/tmp/timex-licensing-worker-heartbeat")
    cabinet_url: str | None = None
    cabinet_setup_hours: int = Field(72, gt=0)
    cabinet_session_idle_minutes: int = Field(30, gt=0)
    cabinet_session_hours: int = Field(12, gt=0)
    cabinet_login_failure_limit: int = Field(10, gt=0)
    cabinet_login_failure_window_seconds: int = Field(900, gt=0)
    cabinet_admin_totp: bool = False

    def insecure_settings(self) -> list[str]:
        """Secret settings that only the quick start may use: shorter than `MIN_SECRET_BYTES`, or shipped here."""
        secrets = {
            "JWT_SECRET": self.jwt_secret,
            "KEY_HASH_SECRET": self.key_hash_secret,
            "CERTIFICATE_KEY_SECRET (or CERTIFICATE_PRIVATE_KEY)": None
            if self.certificate_private_key
            else self.certificate_key_secret,
            "METRICS_TOKEN": self.metrics_token,
        }
        return [
            name
            for name, value in secrets.items()
            if value is not None and (value in SHIPPED_SECRETS or len(value.encode()) < MIN_SECRET_BYTES)
        ]

    def check_production(self) -> None:
        if self.environment != "production":
            return
        if insecure := self.insecure_settings():
            raise RuntimeError(
                f"refusing to start in production with {', '.join(insecure)} shorter than {MIN_SECRET_BYTES} bytes "
                "or a value shipped in the repository (a default, compose.env.example's)"
            )
        if self.database_url is None:
            # A deploy that forgot DATABASE_URL would run each replica on a license database of its own.
            raise RuntimeError("refusing to start in production on the embedded PostgreSQL: set DATABASE_URL")
        if self.root_certificate is None:
            # A development root made on the server would be trusted by no Timex build.
            raise RuntimeError("refusing to start in production without ROOT_CERTIFICATE (see `init-root`)")
        if self.certificate_private_key is not None and self.certificate_chain is None:
            raise RuntimeError("refusing to start in production with CERTIFICATE_PRIVATE_KEY but no CERTIFICATE_CHAIN")

    @property
    def trusted_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(proxy, strict=False) for proxy in self.trusted_proxies]

    @property
    def metrics_allowed_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(network, strict=False) for network in self.metrics_networks]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    @property
    def unit_price_minor(self) -> int:
        return int(self.unit_price * 100)


@lru_cache
def get_settings() -> Settings:
    return Settings()
