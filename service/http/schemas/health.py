"""`/healthz` and `/readyz`."""

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    rate_limits: Literal["redis", "memory"] = Field(description="Where this process counts failures now")
    redis: Literal["unreachable"] | None = Field(None, description="Set while `REDIS_URL` is set but not answering")
