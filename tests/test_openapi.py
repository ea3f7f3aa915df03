"""`GET /openapi.json`: a valid OpenAPI 3.1 document describing every route the app has,
with each registered kind's request model as its start body."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Match, Route

from longops.server import ServerConfig
from tests.support.servers import ThreadServer

METHODS = ("get", "put", "post", "delete", "patch")


def document(server: ThreadServer) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/openapi.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    return body


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method.upper(), item[method]


def example_path(path: str, operation: dict[str, Any]) -> str:
    """The path with each parameter's example in its place."""
    examples = {p["name"]: p["example"] for p in operation["parameters"] if p["in"] == "path"}
    return re.sub(r"\{(\w+)\}", lambda m: str(examples[m.group(1)]), path)


def serving_route(routes: list[BaseRoute], method: str, path: str) -> Route | None:
    """The route the app answers `method path` with, as Starlette's router picks it."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b""}
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            assert isinstance(route, Route)
            return route
    return None


def test_the_document_is_valid_openapi_3_1_and_needs_no_key(
    make_server: Callable[..., ThreadServer],
) -> None:
    server = make_server(workers=0, config=ServerConfig(api_keys={"KEY": "t"}))
    doc = document(server)
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": server.url}]
    # Google's shapes are components, and every 4xx names the envelope.
    schemas = doc["components"]["schemas"]
    assert {"Operation", "ListOperationsResponse", "Error", "Status", "File"} <= set(schemas)
    for _, _, operation in operations(doc):
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert answer["$ref"].startswith("#/components/responses/Error")
    for answer in doc["components"]["responses"].values():
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    # Keyed routes say so; the document itself is open.
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert {"apiKey": []} in doc["paths"]["/{version}/operations"]["get"]["security"]


def test_every_route_of_the_app_is_in_the_document(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Each documented operation, with its parameters' examples, must reach a route of
    the app, and every route (each method) must be reached by one: a route added
    without describing it fails here."""
    server = make_server(workers=0)
    doc = document(server)
    routes = app_routes(server)
    served: set[tuple[str, str]] = set()
    for path, method, operation in operations(doc):
        concrete = example_path(path, operation)
        route = serving_route(routes, method, concrete)
        assert route is not None, f"{method} {path} ({concrete}) reaches no route"
        served.add((route.path, method))
    missing = [
        f"{method} {route.path}"
        for route in routes
        for method in sorted(getattr(route, "methods", None) or {"?"})
        if method != "HEAD" and (getattr(route, "path", "?"), method) not in served
    ]
    assert not missing, f"routes missing from /openapi.json: {missing}"


def app_routes(server: ThreadServer) -> list[BaseRoute]:
    """The Starlette app's routes, in the order its router tries them."""
    app = server.server.config.app  # as given to uvicorn: create_app's Starlette
    routes: list[BaseRoute] = app.routes
    return routes


def test_each_kind_loaded_is_described_by_its_request_model(
    make_server: Callable[..., ThreadServer],
) -> None:
    with_tests = document(make_server(workers=0, load=("tests.support.kinds",)))
    bare = document(make_server(workers=0, load=()))
    start = "/{version}/kinds/test.record:start"
    assert start not in bare["paths"]
    body = with_tests["paths"][start]["post"]["requestBody"]["content"]["application/json"]
    schemas = with_tests["components"]["schemas"]
    start_body = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert start_body["required"] == ["journal"]
    assert set(start_body["properties"]) == {
        "journal",
        "seconds",
        "steps",
        "webhookConfig",
        "priority",
        "scheduleTime",
        "scheduleDelay",
        "concurrencyKey",
    }
    # The model itself, as `GET kinds/test.record` shows it.
    assert set(schemas["kind.test.record.Request"]["properties"]) == {"journal", "seconds", "steps"}
    # A built-in kind's nested models are components of its own, referenced from it.
    sleep = with_tests["components"]["schemas"]["kind.longops.sleep.Request"]
    assert sleep["properties"]["failWith"]["anyOf"][0] == {
        "$ref": "#/components/schemas/kind.longops.sleep.FailWith"
    }
    validate(with_tests)


@pytest.mark.parametrize("path", ["/openapi.json", "/healthz"])
def test_open_routes_answer_without_a_key(
    make_server: Callable[..., ThreadServer], path: str
) -> None:
    server = make_server(workers=0, config=ServerConfig(api_keys={"KEY": "t"}))
    assert httpx.get(f"{server.url}{path}").status_code == 200
    # …while the rest wants one.
    assert httpx.get(f"{server.url}/v1beta/operations").status_code == 403


def conforms(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """`value` against a schema of the document (its `$ref`s resolved in it)."""
    Draft202012Validator({**schema, "components": doc["components"]}).validate(value)


def test_a_reused_request_id_is_a_documented_409(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Fuzzer finding: a requestId sent again with another body is ALREADY_EXISTS, which
    the document did not list for the routes that take one."""
    server = make_server(workers=0)
    doc = document(server)
    url = f"{server.url}/v1beta/kinds/longops.sleep:start?requestId=r1"
    assert httpx.post(url, json={"seconds": 1}).status_code == 200
    again = httpx.post(url, json={"seconds": 2})
    assert again.status_code == 409
    for path, _, operation in operations(doc):
        if any(p["name"] == "requestId" for p in operation["parameters"]):
            assert "409" in operation["responses"], path
    answer = doc["paths"]["/{version}/kinds/longops.sleep:start"]["post"]["responses"]["409"]
    envelope = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    conforms(doc, envelope["content"]["application/json"]["schema"], again.json())


def test_watch_events_conform_to_the_document(make_server: Callable[..., ThreadServer]) -> None:
    """Fuzzer finding: the document gave a stream's events as one string, so no event
    of a real stream conformed; each is {event, id, data}, data an Operation's JSON."""
    server = make_server(workers=0)
    doc = document(server)
    name = httpx.post(f"{server.url}/v1beta/kinds/longops.sleep:start", json={}).json()["name"]
    with httpx.stream("GET", f"{server.url}/v1beta/{name}:watch", timeout=10) as stream:
        lines = []
        for line in stream.iter_lines():
            if not line:
                break
            lines.append(line)
    event = dict(line.split(": ", 1) for line in lines)
    answer = doc["paths"]["/{version}/operations/{operationId}:watch"]["get"]["responses"]["200"]
    schema = answer["content"]["text/event-stream"]["schema"]
    conforms(doc, schema, event)
    conforms(doc, schema["properties"]["data"]["contentSchema"], json.loads(event["data"]))


def test_a_kind_loaded_later_appears_and_one_pydantic_cannot_describe_is_any_object(
    make_server: Callable[..., ThreadServer],
) -> None:
    """The document follows the registry (it is cached per set of kinds), and a request
    model with a field of an arbitrary Python type is any object, not a 500."""
    server = make_server(workers=0, load=())
    start = "/{version}/kinds/test.opaque:start"
    assert start not in document(server)["paths"]
    server.engine.registry.load("tests.support.odd_kinds")
    doc = document(server)
    validate(doc)
    body = doc["paths"][start]["post"]["requestBody"]["content"]["application/json"]
    schema = doc["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {
        "webhookConfig",
        "priority",
        "scheduleTime",
        "scheduleDelay",
        "concurrencyKey",
    }
