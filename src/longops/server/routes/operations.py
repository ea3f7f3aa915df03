"""google.longrunning.Operations over HTTP: get, list, cancel, delete, wait; start a kind."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine import Engine, OperationRecord, State
from longops.engine.engine import UnknownKind
from longops.server import names
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import invalid_argument, not_found
from longops.server.flow import flow
from longops.server.render import RenderCache, render_operation
from longops.server.requests import (
    field,
    parse_bool,
    parse_duration,
    read_json,
    request_id,
)
from longops.server.routes.base import Routes

_FILTER_TERM = re.compile(r"^\s*(done|kind)\s*[=:]\s*(\"[^\"]*\"|'[^']*'|\S+)\s*$")
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_EMPTY = b"{}"


def json_response(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


class OperationRoutes(Routes):
    def __init__(self, engine: Engine, auth: Authenticator, config: ServerConfig) -> None:
        super().__init__(engine, auth, config)
        self._rendered = RenderCache(engine.registry)

    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}"
        # GET comes first and dispatches itself: polling is by far the hottest path,
        # and every route tried before the right one costs a regex match.
        return [
            Route(f"{v}/{{name:opname}}", self.get, methods=["GET"]),
            Route(f"{v}/kinds/{{kind:str}}:start", self.start, methods=["POST"]),
            Route(f"{v}/{{name:path}}:cancel", self.cancel, methods=["POST"]),
            Route(f"{v}/{{name:path}}:wait", self.wait, methods=["POST"]),
            Route(
                f"{v}/{{resource:path}}:fetchPredictOperation",
                self.fetch_predict_operation,
                methods=["POST"],
            ),
            Route(f"{v}/{{name:opname}}", self.delete, methods=["DELETE"]),
        ]

    def render(self, record: OperationRecord) -> Response:
        return Response(self._rendered.body(record), media_type="application/json")

    async def render_read(self, record: OperationRecord) -> Response:
        """A read of one operation: a PENDING one also says why it waits and its place
        (`Engine.waiting`, read from the store); any other is `render`'s cached body,
        with no read beyond the operation's own."""
        if record.state is not State.PENDING:
            return self.render(record)
        body = self._rendered.waiting_body(record, await self.engine.waiting(record))
        return Response(body, media_type="application/json")

    async def _find(self, name: str, tenant: str) -> OperationRecord:
        id = names.operation_id(name)
        record = await self.engine.get(id, tenant)
        if record is None or not names.matches(name, record.name, id):
            raise not_found(f"Operation {name} not found.")
        return record

    # -- endpoints -------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        if name == "operations":
            return await self.list_operations(request, None)
        if name.endswith("/operations"):
            return await self.list_operations(request, name[: -len("/operations")])
        tenant = self.auth.tenant(request)
        if not names.is_operation_name(name):
            raise not_found(f"Method not found: GET {request.url.path}")
        return await self.render_read(await self._find(name, tenant))

    async def fetch_predict_operation(self, request: Request) -> Response:
        """Vertex polls its video operations with a POST on the model resource."""
        tenant = self.auth.tenant(request)
        body = await read_json(request, self.config.max_body_bytes)
        name = field(body, "operationName")
        if not isinstance(name, str) or not name:
            raise invalid_argument("operationName is required.", field="operationName")
        resource: str = request.path_params["resource"]
        if name.rpartition("/operations/")[0] not in {resource, ""} and not name.startswith(
            "operations/"
        ):
            raise not_found(f"Operation {name} not found under {resource}.")
        return await self.render_read(await self._find(name, tenant))

    async def list_operations(self, request: Request, parent: str | None) -> Response:
        tenant = self.auth.tenant(request)
        prefix = None
        if parent is not None:
            prefix = f"{names.check_parent(parent)}/operations/"
        query = request.query_params
        filter_text = query.get("filter", "")
        done, kinds = self._parse_filter(filter_text)
        scope = f"{tenant}\x00{parent}\x00{filter_text}"
        size, before = self.page(request, scope)
        records = await self.engine.list_operations(
            tenant, name_prefix=prefix, done=done, kinds=kinds, before_seq=before, limit=size + 1
        )
        body: dict[str, Any] = {
            "operations": [
                render_operation(r, self.engine.registry.get(r.kind)) for r in records[:size]
            ]
        }
        if token := self.next_page_token(records, size, scope):
            body["nextPageToken"] = token
        return json_response(body)

    @staticmethod
    def _parse_filter(text: str) -> tuple[bool | None, list[str] | None]:
        done: bool | None = None
        kinds: list[str] | None = None
        if not text.strip():
            return done, kinds
        for term in _AND.split(text.strip()):
            match = _FILTER_TERM.match(term)
            if match is None:
                raise invalid_argument(
                    f"Invalid filter term {term!r}: supported are done=true|false and"
                    ' kind="NAME", joined with AND.',
                    field="filter",
                )
            key, value = match.group(1), match.group(2).strip("\"'")
            if key == "done":
                done = parse_bool(value, "filter")
            else:
                # Terms are ANDed: a second, different kind matches nothing.
                kinds = [value] if kinds is None or kinds == [value] else []
        return done, kinds

    async def cancel(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        await read_json(request, self.config.max_body_bytes)
        record = await self._find(request.path_params["name"], tenant)
        await self.engine.cancel(record.id, tenant)
        return Response(_EMPTY, media_type="application/json")

    async def delete(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        name: str = request.path_params["name"]
        if not names.is_operation_name(name):
            raise not_found(f"Method not found: DELETE {request.url.path}")
        record = await self._find(name, tenant)
        await self.engine.delete(record.id, tenant)
        return Response(_EMPTY, media_type="application/json")

    async def wait(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        body = await read_json(request, self.config.max_body_bytes)
        raw = field(body, "timeout")
        if raw is None:
            raw = request.query_params.get("timeout")
        timeout = (
            self.config.max_wait_seconds
            if raw is None
            else min(parse_duration(raw, "timeout"), self.config.max_wait_seconds)
        )
        name: str = request.path_params["name"]
        id = names.operation_id(name)
        waited = await self.engine.wait(
            id, tenant, timeout, accept=lambda record: names.matches(name, record.name, id)
        )
        if waited is None:
            raise not_found(f"Operation {name} not found.")
        return self.render(waited)

    async def start(self, request: Request) -> Response:
        """Start an operation of any registered kind: `POST /v1beta/kinds/{kind}:start`."""
        tenant = self.auth.tenant(request)
        body = await read_json(request, self.config.max_body_bytes)
        kind = request.path_params["kind"]
        flow_control = flow(body, time.time())
        try:
            record = await self.engine.create(
                kind,
                body,
                tenant=tenant,
                request_id=request_id(request),
                webhook=flow_control.webhook,
                priority=flow_control.priority,
                not_before=flow_control.not_before,
                concurrency_key=flow_control.concurrency_key,
            )
        except UnknownKind:
            raise not_found(f"Kind {kind} is not registered on this server.") from None
        return self.render(record)
