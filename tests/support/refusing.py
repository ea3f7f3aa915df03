"""A kind whose request model refuses every request with the google.rpc code it names:
how tests see what the server answers for each code a kind may reject with."""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from longops.engine.failures import RequestRejected
from longops.kinds import Context, kind


class RefuseRequest(BaseModel):
    code: int

    @field_validator("code")
    @classmethod
    def refuse(cls, code: int) -> int:
        raise RequestRejected(f"refused with code {code}", code=code)


@kind("test.refuse", request=RefuseRequest)
async def refuse(ctx: Context, request: RefuseRequest) -> None:
    """Never runs: every request is refused before it is stored."""
