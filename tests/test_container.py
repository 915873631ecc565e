"""The container image is built from a Dockerfile that hadolint accepts, and runs the installed
service with the migrations beside it."""

import os
import re
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


SECRETS = ("JWT_SECRET", "KEY_HASH_SECRET", "CERTIFICATE_KEY_SECRET")


def test_compose_runs_the_service_as_in_production_with_secrets_from_an_env_file() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    api = compose["services"]["api"]["environment"]
    example = (ROOT / "compose.env.example").read_text()

    assert api["ENVIRONMENT"] == "production"
    assert api["DATABASE_URL"].startswith("postgresql://") and "${POSTGRES_PASSWORD" in api["DATABASE_URL"]
    assert api["REDIS_URL"].startswith("redis://")
    for secret in SECRETS:
        # Its value from compose.env (`--env-file`), never written in compose.yaml.
        assert api[secret].startswith(f"${{{secret}:?"), api[secret]
        assert f"\n{secret}=" in example
    assert "compose.env" in (ROOT / ".gitignore").read_text().split()


def test_compose_gives_each_container_only_its_own_settings() -> None:
    """No `env_file` hands every secret to every container: each names what it gets."""
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]

    assert all("env_file" not in service for service in services.values())
    assert set(services["db"]["environment"]) == {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}
    assert set(services["migrate"]["environment"]) == {"DATABASE_URL"}
    assert "environment" not in services["redis"]
    assert set(SECRETS) <= set(services["api"]["environment"])


def test_the_image_is_pinned_and_built_from_hashed_locks_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)

    assert image is not None and re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", image[1])
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    installs = re.findall(r"pip (?:install|wheel) [^\n]*", dockerfile)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs
    assert "--no-build-isolation" in dockerfile  # the build backend is build.lock's, not one fetched unpinned
    build_in = [line for line in (ROOT / "requirements" / "build.in").read_text().splitlines() if line[:1].isalpha()]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert build_in == requires
    assert "--hash=sha256:" in (ROOT / "requirements" / "build.lock").read_text()


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
