"""`/healthz` and `/readyz`."""

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    rate_limits: Literal["redis", "memory"] = Field(description="Where this process counts failures now")
    redis: Literal["unreachable", "too_old"] | None = Field(
        None, description="Set while `REDIS_URL` is set but not answering, or answering with a version too old"
    )
    redis_version: str | None = Field(None, max_length=32, description="With `too_old`: the version Redis reports")
    redis_required: str | None = Field(
        None, max_length=32, description="With `too_old`: the oldest version the counters run on"
    )
