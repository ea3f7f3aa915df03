"""Video generation, in both of Google's forms.

Gemini: `POST models/{m}:predictLongRunning` → `models/{m}/operations/{id}`.
Vertex: `POST projects/{p}/locations/{l}/publishers/google/models/{m}:predictLongRunning`
(or the express `publishers/google/models/{m}:…`) → `{model resource}/operations/{id}`,
polled with `:fetchPredictOperation` (served by the operation routes).

`GET models` and `GET models/{m}` show the video catalogue as Google's `Model` resources
(what `longops models` prints), each with what it accepts under `videoGeneration`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine import Engine
from longops.engine.engine import UnknownKind
from longops.kinds.videos.catalogue import VideoModel
from longops.kinds.videos.generate import VideoKind
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import invalid_argument, not_found
from longops.server.flow import flow
from longops.server.requests import read_json, request_id
from longops.server.routes.base import Routes
from longops.server.routes.operations import OperationRoutes, json_response

_MODEL = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
_SEGMENT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
KIND = "generate_videos"


def render_model(model: VideoModel) -> dict[str, Any]:
    """A catalogue entry as Google's `Model` resource; its options in `videoGeneration`
    (the backend that renders it is the operator's business, not shown)."""
    return {
        "name": f"models/{model.name}",
        "baseModelId": model.name,
        "displayName": model.name,
        "supportedGenerationMethods": ["predictLongRunning"],
        "videoGeneration": {
            "durationSeconds": list(model.durations),
            "defaultDurationSeconds": model.default_duration,
            "resolutions": list(model.resolutions),
            "aspectRatios": list(model.aspect_ratios),
            "maxVideos": model.max_videos,
            "fps": list(model.fps),
            "generateAudio": model.audio,
        },
    }


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
            Route(f"{v}/models", self.list_models, methods=["GET"]),
            Route(f"{v}/models/{{model:str}}", self.get_model, methods=["GET"]),
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

    def _catalogue(self) -> dict[str, VideoModel]:
        """The models served: none when video generation is off (no such kind)."""
        kind = self.engine.registry.get(KIND)
        return kind.settings.catalogue.models if isinstance(kind, VideoKind) else {}

    async def list_models(self, request: Request) -> Response:
        self.auth.tenant(request)
        models = sorted(self._catalogue().values(), key=lambda model: model.name)
        return json_response({"models": [render_model(model) for model in models]})

    async def get_model(self, request: Request) -> Response:
        self.auth.tenant(request)
        name = self._model(request)
        model = self._catalogue().get(name)
        if model is None:
            raise not_found(f"models/{name} is not found on this server.")
        return json_response(render_model(model))

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
        flow_control = flow(body, time.time())
        body["api"], body["model"] = api, model
        try:
            record = await self.engine.create(
                KIND,
                body,
                tenant=tenant,
                request_id=request_id(request),
                parent=parent,
                webhook=flow_control.webhook,
                priority=flow_control.priority,
                not_before=flow_control.not_before,
                concurrency_key=flow_control.concurrency_key,
            )
        except UnknownKind:
            raise not_found(f"models/{model} is not served: video generation is off.") from None
        return self.operations.render(record)
