"""What `longops ops`, `longops kinds` and `longops models` show a person, run as a user
runs them against a real server; and the read-only routes behind the last two."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import httpx
import pytest

from longops.kinds.videos.catalogue import Catalogue, VideoModel
from longops.kinds.videos.settings import VideoSettings
from longops.server import ServerConfig
from tests.support.servers import ThreadServer, run_longops


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command run off a terminal, with the 80 columns a terminal starts with."""
    return run_longops(*args, env={"LONGOPS_BASE_URL": url, "COLUMNS": "80"})


def started(url: str, kind: str, request: dict[str, object]) -> str:
    done = cli(url, "ops", "start", kind, json.dumps(request), "--json")
    assert done.returncode == 0, done.stderr
    name: str = json.loads(done.stdout)["name"]
    return name


def video(url: str) -> str:
    """A video generation, whose name is a long one (models/…/operations/…)."""
    body = {"instances": [{"prompt": "a lighthouse"}], "parameters": {"durationSeconds": 5}}
    answer = httpx.post(f"{url}/v1beta/models/veo-2.0-generate-001:predictLongRunning", json=body)
    assert answer.status_code == 200, answer.text
    name: str = answer.json()["name"]
    assert name.startswith("models/veo-2.0-generate-001/operations/")
    return name


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(load=("tests.support.kinds", "tests.support.odd_kinds"))


def test_ops_list_shows_whole_names_and_kinds(server: ThreadServer) -> None:
    """Names longer than fit in 80 columns are printed whole, to copy into `ops get`."""
    short = started(server.url, "longops.sleep", {"seconds": 0})
    long = video(server.url)
    listed = cli(server.url, "ops", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "STATE", "PROGRESS", "CREATED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {short, long}
    assert rows[short][1] == "longops.sleep" and rows[long][1] == "generate_videos"
    assert max(len(line) for line in lines) > 80  # wider than the terminal, and not cut
    # Columns line up: every row's kind starts where the header's KIND does.
    column = lines[0].index("KIND")
    assert all(line[column:].startswith(rows[line.split()[0]][1]) for line in lines[1:])


def test_ops_list_json_is_the_operations_on_the_wire(server: ThreadServer) -> None:
    name = started(server.url, "longops.sleep", {"seconds": 0})
    listed = json.loads(cli(server.url, "ops", "list", "--json").stdout)
    assert [op["name"] for op in listed] == [name]
    assert listed[0]["metadata"]["kind"] == "longops.sleep"


def test_ops_list_with_none(server: ThreadServer) -> None:
    listed = cli(server.url, "ops", "list")
    assert listed.returncode == 0 and listed.stdout == "" and "No operations." in listed.stderr


@pytest.mark.parametrize("verb", ["get", "wait", "cancel", "delete"])
def test_a_bare_id_names_the_operation(server: ThreadServer, verb: str) -> None:
    """`qfimv09o…` for `operations/qfimv09o…`, whatever the operation's full name."""
    name = video(server.url)
    bare = name.rsplit("/", 1)[1]
    done = cli(server.url, "ops", verb, bare, *(["--timeout", "60"] if verb == "wait" else []))
    assert done.returncode == 0, done.stderr
    said = {
        "get": name,
        "wait": name,
        "cancel": f"cancel requested for operations/{bare}",
        "delete": f"deleted operations/{bare}",
    }
    assert done.stdout.splitlines()[0] == said[verb]
    after = cli(server.url, "ops", "get", bare)
    if verb == "delete":
        assert after.returncode == 1 and "404 NOT_FOUND" in after.stderr
    else:
        assert after.returncode == 0 and after.stdout.splitlines()[0] == name


def test_ops_get_is_aligned(server: ThreadServer) -> None:
    name = started(server.url, "longops.sleep", {"seconds": 0, "result": {"x": [1, "[b]"]}})
    assert cli(server.url, "ops", "wait", name, "--timeout", "30").returncode == 0
    shown = cli(server.url, "ops", "get", name)
    assert shown.returncode == 0, shown.stderr
    name_line, *fields = shown.stdout.splitlines()
    assert name_line == name
    labels = [line.split()[0] for line in fields]
    assert labels[:3] == ["state", "kind", "progress"] and "createTime" in labels
    assert "response" in labels
    starts = {len(line) - len(line.lstrip(" ").split(maxsplit=1)[1]) for line in fields}
    assert len(starts) == 1, shown.stdout  # every value in one column
    # The response as JSON, brackets and all (not eaten as terminal markup).
    assert '"x": [1, "[b]"]' in shown.stdout


def test_kinds_lists_each_kind_with_its_request(server: ThreadServer) -> None:
    shown = cli(server.url, "kinds")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "longops.sleep  Wait, report progress" in text
    assert "test.opaque" in text and "(no JSON schema for its request)" in text
    sleep = text[text.index("longops.sleep") :].split("\n")
    assert sleep[1].split() == ["seconds", "number"]
    videos = text[text.index("generate_videos") :].split("\n")
    assert ["instances", "array", "of", "Instance", "required"] in [v.split() for v in videos]
    as_json = json.loads(cli(server.url, "kinds", "--json").stdout)
    by_name = {kind["name"]: kind for kind in as_json}
    assert {"longops.sleep", "generate_videos", "test.record", "test.opaque"} <= set(by_name)
    assert by_name["longops.sleep"]["requestSchema"]["properties"]["seconds"]["type"] == "number"
    assert "requestSchema" not in by_name["test.opaque"]


def test_models_lists_the_catalogue_served(make_server: Callable[..., ThreadServer]) -> None:
    """The server's catalogue, not the defaults: a model added by the operator is there."""
    catalogue = Catalogue()
    catalogue.models["veo-test"] = VideoModel("veo-test", durations=(3,), default_duration=3)
    server = make_server(videos=VideoSettings(catalogue=catalogue))
    shown = cli(server.url, "models")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "SECONDS",
        "RESOLUTIONS",
        "ASPECT",
        "RATIOS",
        "FPS",
        "VIDEOS",
        "AUDIO",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["models/veo-test"] == ["3", "720p", "16:9,9:16", "24", "1-4", "no"]
    assert rows["models/veo-3.0-generate-001"][:2] == ["4,6,8", "720p,1080p"]
    listed = json.loads(cli(server.url, "models", "--json").stdout)
    assert len(listed) == len(catalogue.models)


def test_models_with_video_generation_off(make_server: Callable[..., ThreadServer]) -> None:
    server = make_server()
    server.engine.registry._kinds.pop("generate_videos")
    shown = cli(server.url, "models")
    assert shown.returncode == 0 and shown.stdout == ""
    assert "video generation is off" in shown.stderr
    assert httpx.get(f"{server.url}/v1beta/models").json() == {"models": []}


# -- the routes ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1beta1"])
def test_get_one_kind_and_one_model(server: ThreadServer, version: str) -> None:
    kind = httpx.get(f"{server.url}/{version}/kinds/longops.sleep")
    assert kind.status_code == 200 and kind.json()["name"] == "longops.sleep"
    model = httpx.get(f"{server.url}/{version}/models/veo-2.0-generate-001").json()
    assert model["name"] == "models/veo-2.0-generate-001"
    assert model["supportedGenerationMethods"] == ["predictLongRunning"]
    assert model["videoGeneration"]["defaultDurationSeconds"] == 8


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("kinds/no.such.kind", 404, "NOT_FOUND"),
        ("kinds/bad%20name", 400, "INVALID_ARGUMENT"),
        ("kinds/" + "k" * 200, 400, "INVALID_ARGUMENT"),
        ("models/veo-9", 404, "NOT_FOUND"),
        ("models/bad%20name", 400, "INVALID_ARGUMENT"),
        ("models/veo-2.0-generate-001:predictLongRunning", 400, "INVALID_ARGUMENT"),
    ],
)
def test_bad_names_get_googles_envelope(
    server: ThreadServer, path: str, status: int, code: str
) -> None:
    answer = httpx.get(f"{server.url}/v1beta/{path}")
    assert answer.status_code == status
    assert answer.json()["error"]["status"] == code


def test_the_routes_want_a_key_where_keys_are_set(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Tenant-agnostic (every tenant sees the same), but behind the same keys."""
    server = make_server(config=ServerConfig(api_keys={"k1": "a", "k2": "b"}))
    for path in ("kinds", "kinds/longops.sleep", "models", "models/veo-2.0-generate-001"):
        assert httpx.get(f"{server.url}/v1beta/{path}").status_code == 403
        wrong = httpx.get(f"{server.url}/v1beta/{path}", headers={"x-goog-api-key": "nope"})
        assert wrong.status_code == 400
        seen = [
            httpx.get(f"{server.url}/v1beta/{path}", headers={"x-goog-api-key": key}).json()
            for key in ("k1", "k2")
        ]
        assert seen[0] == seen[1]
    refused = run_longops("kinds", "--base-url", server.url)
    assert refused.returncode == 1 and "403 PERMISSION_DENIED" in refused.stderr
    allowed = run_longops("models", "--base-url", server.url, "--api-key", "k2")
    assert allowed.returncode == 0 and "models/veo-2.0-generate-001" in allowed.stdout
