"""`POST /v1/resellers`: an admin registers a reseller; its client secret is shown once."""

from fastapi import APIRouter, status

from service import resellers
from service.http.deps import AdminDep, EngineDep
from service.http.openapi import problem_responses
from service.http.schemas import ResellerCreated, ResellerIn

router = APIRouter(prefix="/v1/resellers", tags=["resellers"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a reseller",
             responses=problem_responses(400, 401, 403, 409, 413, 503))
async def register(body: ResellerIn, engine: EngineDep, _admin: AdminDep) -> ResellerCreated:
    """Admins: register a reseller. Its client secret is in this answer only; the service keeps a hash."""
    new = await resellers.register(engine, body.name)
    return ResellerCreated(id=new.id, name=new.name, client_id=new.client_id, client_secret=new.client_secret)
