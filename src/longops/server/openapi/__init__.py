"""The server's OpenAPI 3.1 document, served at `GET /openapi.json`.

Written from what the server declares: every route of `server/routes/` is described
here (tests/test_openapi.py enumerates the app's routes and fails on one that is not),
with Google's shapes (google.longrunning.Operation, the error envelope, File, …) as
hand-written components (`schemas.py`, `webhooks.py`; the paths in `paths.py`), and each
registered kind's request model, by pydantic's own JSON schema, as the body of its
`kinds/{kind}:start` path (`kinds.py`). The document is built per server from its
registry, so a kind loaded with `--load` appears in it.

It holds no tenant data (only what the deployment serves), so it is served without an
API key, as `/healthz` is.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longops._version import __version__
from longops.engine import Engine
from longops.engine.registry import Registry
from longops.server.openapi.kinds import (
    ROUTE_FILLED,
    component_prefix,
    kind_paths,
    with_webhook,
    without,
)
from longops.server.openapi.parts import KEYED, OPEN, PARENT, VERSION, Schema, op, ref, reply
from longops.server.openapi.paths import (
    file_paths,
    file_search_paths,
    model_paths,
    operation_paths,
    upload_paths,
)
from longops.server.openapi.schemas import google_schemas
from longops.server.openapi.webhooks import webhook_paths, webhook_schemas

__all__ = ["build_document", "openapi_route"]


def _error_responses() -> dict[str, Schema]:
    reasons = {
        400: "INVALID_ARGUMENT naming the field (or FAILED_PRECONDITION, or an unknown API"
        " key: API_KEY_INVALID).",
        401: "UNAUTHENTICATED: a bearer token that is no key.",
        403: "PERMISSION_DENIED: no API key.",
        404: "NOT_FOUND: no such resource for this caller, or no such path.",
        405: "The path names another method's route.",
        409: "ALREADY_EXISTS (a requestId used for another request, a file name taken),"
        " or ABORTED (an upload being finalized).",
        413: "The body is over the server's limit.",
        416: "OUT_OF_RANGE: a Range outside the file.",
        429: "RESOURCE_EXHAUSTED: the tenant is at a quota (details: QuotaFailure, RetryInfo);"
        " retry after Retry-After seconds.",
        503: "UNAVAILABLE: the database is busy or gone; retry (Retry-After).",
    }
    return {
        f"Error{code}": {
            "description": reason,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for code, reason in reasons.items()
    }


def _service_paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": op(
                "healthz",
                "Liveness: answers while the process serves.",
                "service",
                reply("Health", "Serving."),
                errors=(),
                security=OPEN,
            )
        },
        "/openapi.json": {
            "get": op(
                "openapi",
                "This document (no API key: it holds no tenant data).",
                "service",
                {
                    "description": "The OpenAPI 3.1 document of this server.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                errors=(),
                security=OPEN,
            )
        },
    }


def build_document(registry: Registry, server_url: str | None = None) -> Schema:
    """The OpenAPI document of a server running the kinds of `registry`."""
    paths, kind_components = kind_paths(registry)
    schemas = {**google_schemas(), **webhook_schemas(), **kind_components}
    for name, (kind_name, description, filled) in ROUTE_FILLED.items():
        kind = registry.get(kind_name)
        request = schemas.get(f"{component_prefix(kind)}Request") if kind else None
        body = without(request, *filled) if request else {"type": "object"}
        schemas[name] = {**with_webhook(body), "title": name, "description": description}
    document: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "longops",
            "version": __version__,
            "summary": "Long-running operations, wire-compatible with Gemini and Vertex AI.",
            "description": "Every route is served under /v1, /v1beta, /v1beta1 and /v1alpha."
            " Errors are Google's envelope. Send the API key as `x-goog-api-key`,"
            " `?key=` or a bearer token.",
        },
        "paths": {
            **_service_paths(),
            **operation_paths("/{version}", [VERSION], ""),
            **operation_paths("/{version}/{parent}", [VERSION, PARENT], "Of"),
            **model_paths(),
            **paths,
            **file_paths(),
            **upload_paths(),
            **file_search_paths(),
            **webhook_paths(),
            **_metrics_paths(),
        },
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": KEYED,
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def openapi_route(engine: Engine) -> Route:
    """`GET /openapi.json`, built once per registry and public URL (kinds are loaded
    before the server starts, but a test may load more)."""
    built: dict[tuple[str, ...], bytes] = {}

    async def openapi(request: Request) -> Response:
        key = (engine.config.public_url, *engine.registry.names())
        body = built.get(key)
        if body is None:
            built.clear()
            document = build_document(engine.registry, engine.config.public_url or None)
            body = built[key] = orjson.dumps(document)
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


def _metrics_paths() -> dict[str, Schema]:
    return {
        "/metrics": {
            "get": op(
                "metrics",
                "This process's Prometheus metrics; with LONGOPS_METRICS_TOKEN set, that"
                " token as a bearer token (the API keys are not asked for).",
                "service",
                {
                    "description": "The Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                errors=(401,),
                security=[{}, {"metricsToken": []}],
            )
        }
    }
