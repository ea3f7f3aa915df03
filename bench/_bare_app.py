"""The bare baseline: a tiny Starlette app with longops' URL shapes and fixed JSON answers.

It does what any Starlette/uvicorn JSON endpoint must (route, read the body, serialise
with orjson) and nothing longops does (no store, no engine, no auth), and it runs
under the same `uvicorn.run` settings as `longops serve`: one process, uvloop and
httptools as uvicorn picks them, access log off, 5 s graceful-shutdown cap. The
difference between the two is therefore longops' own cost.

    python bench/_bare_app.py --port 8001 [--get-body FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_METADATA = {
    "@type": "type.googleapis.com/longops.v1.SleepMetadata",
    "createTime": "2026-01-01T00:00:00.000000Z",
    "updateTime": "2026-01-01T00:00:00.000000Z",
}
PENDING: dict[str, Any] = {
    "name": "operations/bare0000000000000000",
    "metadata": {**_METADATA, "state": "PENDING", "attempt": 0},
    "done": False,
}
DONE: dict[str, Any] = {
    "name": "operations/bare0000000000000000",
    "metadata": {
        **_METADATA,
        "progressPercent": 100,
        "step": 1,
        "state": "SUCCEEDED",
        "attempt": 1,
        "startTime": "2026-01-01T00:00:00.000000Z",
        "endTime": "2026-01-01T00:00:00.000000Z",
    },
    "done": True,
    "response": {"@type": "type.googleapis.com/longops.v1.SleepResponse", "sleptSeconds": 0.0},
}


def json_response(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    return orjson.loads(raw) if raw.strip() else {}


def create_app(get_body: dict[str, Any]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def get(request: Request) -> Response:
        return json_response(get_body)

    async def start(request: Request) -> Response:
        await _read_json(request)
        return json_response(PENDING)

    async def wait(request: Request) -> Response:
        await _read_json(request)
        return json_response(DONE)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1beta/{name:path}", get, methods=["GET"]),
            Route("/v1beta/kinds/{kind:str}:start", start, methods=["POST"]),
            Route("/v1beta/{name:path}:wait", wait, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--get-body", type=Path, help="JSON file the GET route answers with")
    args = parser.parse_args()
    get_body = orjson.loads(args.get_body.read_bytes()) if args.get_body else DONE
    uvicorn.run(
        create_app(get_body),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
