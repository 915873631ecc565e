"""`POST /v1/auth/token`'s answer (its request is a form: `routes/auth.py`)."""

from typing import Literal

from pydantic import BaseModel

from service.http.schemas.common import examples


class TokenOut(BaseModel):
    model_config = examples(
        {
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2ln",
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
