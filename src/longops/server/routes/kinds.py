"""The kinds a server runs, each with the JSON schema of its request: what `longops kinds`
shows, so a user can see what `POST kinds/{kind}:start` accepts without reading code.

Read-only and the same for every tenant (kinds are the deployment's, not a tenant's), but
behind the same API keys as the rest.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import PydanticUserError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine.registry import KIND_NAME, Kind
from longops.server.errors import invalid_argument, not_found
from longops.server.routes.base import Routes
from longops.server.routes.operations import json_response


def render_kind(kind: Kind[Any]) -> dict[str, Any]:
    """A kind as `GET kinds` lists it. A request model pydantic cannot describe in JSON
    schema (a field of an arbitrary Python type) is shown without one, not a 500."""
    body: dict[str, Any] = {
        "name": kind.name,
        "description": kind.description,
        "responseType": kind.response_type,
        "metadataType": kind.metadata_type,
    }
    with contextlib.suppress(PydanticUserError):
        body["requestSchema"] = kind.request_model.model_json_schema(by_alias=True)
    return body


class KindRoutes(Routes):
    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}"
        return [
            Route(f"{v}/kinds", self.list_kinds, methods=["GET"]),
            Route(f"{v}/kinds/{{kind:kindname}}", self.get_kind, methods=["GET"]),
        ]

    async def list_kinds(self, request: Request) -> Response:
        self.auth.tenant(request)
        kinds = sorted(self.engine.registry, key=lambda kind: kind.name)
        return json_response({"kinds": [render_kind(kind) for kind in kinds]})

    async def get_kind(self, request: Request) -> Response:
        self.auth.tenant(request)
        name: str = request.path_params["kind"]
        if not KIND_NAME.fullmatch(name):
            raise invalid_argument(f"Invalid kind name: {name[:130]!r}.", field="kind")
        kind = self.engine.registry.get(name)
        if kind is None:
            raise not_found(f"Kind {name} is not registered on this server.")
        return json_response(render_kind(kind))
