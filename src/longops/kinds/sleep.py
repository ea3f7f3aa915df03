"""`longops.sleep`: a deterministic stand-in for slow work.

Lets an application rehearse its whole create → poll → result loop, including
the failure and cancel paths, without any real work: it waits `seconds`, reports
progress in `steps`, and can be told to end with a chosen error.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from longops.engine.context import Context
from longops.engine.failures import OperationFailed
from longops.engine.registry import kind


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")


class FailWith(_Model):
    code: int = Field(ge=1, le=16, description="google.rpc code the operation ends with")
    message: str = Field(min_length=1, max_length=2000)


class SleepRequest(_Model):
    seconds: float = Field(default=0.0, ge=0, le=24 * 3600)
    steps: int = Field(default=1, ge=1, le=10_000)
    fail_with: FailWith | None = None
    result: dict[str, object] | None = Field(
        default=None, description="echoed back as the response's `result`"
    )


class SleepResponse(_Model):
    slept_seconds: float
    result: dict[str, object] | None = None


@kind(
    "longops.sleep",
    request=SleepRequest,
    response_type="type.googleapis.com/longops.v1.SleepResponse",
    metadata_type="type.googleapis.com/longops.v1.SleepMetadata",
)
async def sleep(ctx: Context, request: SleepRequest) -> SleepResponse:
    """Wait, report progress, then succeed or fail as asked."""
    for step in range(1, request.steps + 1):
        if request.seconds:
            await asyncio.sleep(request.seconds / request.steps)
        await ctx.report_progress(100 * step / request.steps, step=step)
    if request.fail_with is not None:
        raise OperationFailed(request.fail_with.code, request.fail_with.message)
    return SleepResponse(slept_seconds=request.seconds, result=request.result)
