"""Video generation, in both of Google's forms.

Gemini: `POST models/{m}:predictLongRunning` → `models/{m}/operations/{id}`.
Vertex: `POST projects/{p}/locations/{l}/publishers/google/models/{m}:predictLongRunning`
(or the express `publishers/google/models/{m}:…`) → `{model resource}/operations/{id}`,
polled with `:fetchPredictOperation` (served by the operation routes).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine import Engine
from longops.engine.engine import UnknownKind
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import invalid_argument, not_found
from longops.server.requests import read_json, request_id
from longops.server.routes.base import Routes
from longops.server.routes.operations import OperationRoutes

_MODEL = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
_SEGMENT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
KIND = "generate_videos"


class ModelRoutes(Routes):
    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        config: ServerConfig,
        operations: OperationRoutes,
    ) -> None:
        super().__init__(engine, auth, config)
        self.operations = operations

    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}"
        verb = ":predictLongRunning"
        return [
            Route(f"{v}/models/{{model:str}}{verb}", self.gemini, methods=["POST"]),
            Route(
                f"{v}/projects/{{project:str}}/locations/{{location:str}}"
                f"/publishers/google/models/{{model:str}}{verb}",
                self.vertex,
                methods=["POST"],
            ),
            Route(
                f"{v}/publishers/google/models/{{model:str}}{verb}", self.vertex, methods=["POST"]
            ),
        ]

    async def gemini(self, request: Request) -> Response:
        model = self._model(request)
        return await self._create(request, "gemini", model, f"models/{model}")

    async def vertex(self, request: Request) -> Response:
        model = self._model(request)
        params = request.path_params
        resource = f"publishers/google/models/{model}"
        if "project" in params:
            for key in ("project", "location"):
                if not _SEGMENT.match(params[key]):
                    raise invalid_argument(f"Invalid {key}: {params[key]!r}.", field=key)
            resource = f"projects/{params['project']}/locations/{params['location']}/{resource}"
        return await self._create(request, "vertex", model, resource)

    @staticmethod
    def _model(request: Request) -> str:
        model: str = request.path_params["model"]
        if not _MODEL.match(model):
            raise invalid_argument(f"Invalid model name: {model!r}.", field="model")
        return model

    async def _create(self, request: Request, api: str, model: str, parent: str) -> Response:
        tenant = self.auth.tenant(request)
        body = await read_json(request, self.config.max_media_body_bytes)
        body["api"], body["model"] = api, model
        try:
            record = await self.engine.create(
                KIND, body, tenant=tenant, request_id=request_id(request), parent=parent
            )
        except UnknownKind:
            raise not_found(f"models/{model} is not served: video generation is off.") from None
        return self.operations.render(record)
