"""What the service relies on in its frameworks' internals, stated where a version bump will trip on it
(pyproject.toml bounds FastAPI and SQLAlchemy to the versions these were checked on).

- `create_app` puts the routers' routes into the app's own table (`app.router.routes.extend`), not through
  `include_router`: that needs each route to carry its full path already.
- The driver compiles statements with SQLAlchemy and reads the compiled form's `positiontup` and `binds`
  (tests/test_driver.py runs those statements)."""

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import asyncpg
from starlette.routing import Mount, Route

from service.http.app import create_app
from service.http.routes import installations
from service.models import Installation
from service.settings import Settings


def test_a_routers_routes_carry_their_full_path_and_tags_before_any_include() -> None:
    paths = {route.path: route for route in installations.router.routes if isinstance(route, APIRoute)}

    assert "/v1/installations/{code}/support" in paths
    assert paths["/v1/installations/{code}/support"].tags == ["installations"]


def test_the_apps_table_is_flat_with_the_hot_routes_first() -> None:
    app = create_app(Settings(_env_file=None))
    routes = app.router.routes

    assert all(isinstance(route, APIRoute | Route | Mount) for route in routes)
    api_paths = [route.path for route in routes if isinstance(route, APIRoute)]
    assert api_paths[:3] == ["/v1/installations", "/v1/installations/{code}", "/v1/installations/{code}/support"]


def test_include_router_still_keeps_a_branch_matched_on_every_request() -> None:
    """Why the shortcut exists. When this fails, FastAPI flattens included routers again: the shortcut
    may go, and `app.dependency_overrides` would reach the routes again."""
    app, router = FastAPI(), APIRouter(prefix="/x")
    router.add_api_route("/y", lambda: None)
    app.include_router(router)

    assert not any(isinstance(route, APIRoute) and route.path == "/x/y" for route in app.router.routes)


def test_a_compiled_statement_names_its_positional_parameters_and_their_binds() -> None:
    compiled = select(Installation.id).where(Installation.code == bindparam("code")).compile(dialect=asyncpg.dialect())

    assert compiled.positiontup == ["code"]
    assert compiled.binds["code"].required
    assert "$1" in compiled.string
