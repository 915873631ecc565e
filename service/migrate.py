"""Running the Alembic migrations from code: the CLI's `migrate` and the tests use this."""

from pathlib import Path

from alembic import command
from alembic.config import Config


def _project_root() -> Path:
    """Beside the package in a checkout; the working directory when the package is installed (the
    container runs from WORKDIR /app, where alembic.ini and migrations/ are)."""
    beside = Path(__file__).resolve().parent.parent
    return beside if (beside / "alembic.ini").exists() else Path.cwd()


def alembic_config(database_url: str, configure_logging: bool = True) -> Config:
    config = Config(str(_project_root() / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = configure_logging
    return config


def upgrade(database_url: str, revision: str = "head", configure_logging: bool = True) -> None:
    command.upgrade(alembic_config(database_url, configure_logging), revision)


def downgrade(database_url: str, revision: str = "base", configure_logging: bool = True) -> None:
    command.downgrade(alembic_config(database_url, configure_logging), revision)
