"""`/healthz`: the process is alive. `/readyz`: it can reach its database (send traffic here)."""

from fastapi import APIRouter
from sqlalchemy import text

from service.db import reading
from service.http.deps import EngineDep
from service.http.openapi import problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Liveness for the orchestrator: answers while the process runs, whatever the database does."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database is reachable",
            responses=problem_responses(503))
async def readyz(engine: EngineDep) -> dict[str, str]:
    """Readiness for the load balancer: `200` when the database answers, `503 unavailable` when not."""
    async with reading(engine) as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ready"}
