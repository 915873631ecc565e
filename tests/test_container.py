"""The container image is built from a Dockerfile that hadolint accepts, and runs the installed
service with the migrations beside it."""

import os
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_an_installed_service_migrates_from_its_working_directory(tmp_path: Path, empty_database_url: str) -> None:
    """As in the image: the package installed elsewhere, alembic.ini and migrations/ in the working directory."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "alembic.ini", app)
    shutil.copytree(ROOT / "migrations", app / "migrations")
    shutil.copytree(ROOT / "service", tmp_path / "site" / "service")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "DATABASE_URL": empty_database_url}

    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "Running upgrade 0002 -> 0003" in result.stderr


def test_compose_runs_the_service_as_in_production_with_secrets_from_an_env_file() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    api = compose["services"]["api"]
    example = (ROOT / "compose.env.example").read_text()

    assert api["environment"]["ENVIRONMENT"] == "production"
    assert api["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert api["environment"]["REDIS_URL"].startswith("redis://")
    assert api["env_file"] == "compose.env"
    for secret in ("JWT_SECRET", "KEY_HASH_SECRET", "CERTIFICATE_KEY_SECRET"):
        assert secret not in (ROOT / "compose.yaml").read_text()
        assert f"\n{secret}=" in example
    assert "compose.env" in (ROOT / ".gitignore").read_text().split()


def test_every_file_the_service_reads_at_run_time_is_package_data() -> None:
    """The image installs the package (not the work tree): the documents, catalogues, templates and the pages'
    stylesheet must be in its package data, or the installed service cannot serve them."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    package = ROOT / "service"
    needed = [
        *package.glob("docs/*.md"),
        *package.glob("locale/**/*.po"),
        *package.glob("http/templates/**/*.html"),
        *package.glob("http/static/*"),
    ]

    assert len(needed) >= 9
    for path in needed:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in globs), relative
