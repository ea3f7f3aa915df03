"""A kind whose request pydantic cannot put in JSON schema: `GET kinds` must still list it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from longops.kinds import Context, kind


class Opaque:
    """A plain Python class: no JSON schema describes it."""


class OpaqueRequest(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    thing: Opaque | None = None


@kind("test.opaque", request=OpaqueRequest)
async def opaque(ctx: Context, request: OpaqueRequest) -> None:
    """Accept a request no schema describes."""
