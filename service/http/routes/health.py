"""`/healthz`: the process is alive. `/readyz`: it can reach its database (send traffic here)."""

from typing import NamedTuple

from fastapi import APIRouter
from sqlalchemy import literal_column, select

from service.driver import Rows
from service.http.deps import RuntimeDep
from service.http.openapi import problems
from service.http.schemas.health import Liveness, Readiness

router = APIRouter(tags=["health"])


class _Pong(NamedTuple):
    one: int


_PING = Rows(select(literal_column("1").label("one")), _Pong)


@router.get("/healthz", summary="Liveness: the process answers", operation_id="getLiveness", response_model=Liveness)
async def healthz() -> dict[str, str]:
    """Liveness for the orchestrator: answers while the process runs, whatever the database does."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable",
    operation_id="getReadiness",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses=problems("unavailable"),
)
async def readyz(runtime: RuntimeDep) -> dict[str, str]:
    """Readiness for the load balancer: `200` when the database answers, `503 unavailable` when not.
    `rate_limits` says where this process counts failures now: `redis`, or `memory` (no `REDIS_URL`, or
    Redis unreachable: then `redis` says so, and the process stays ready, limiting on its own)."""
    await runtime.driver.first(_PING, {})
    store = await runtime.counters.check()
    answer = {"status": "ready", "rate_limits": store}
    if runtime.counters.redis_away:
        answer["redis"] = "unreachable"
    return answer
