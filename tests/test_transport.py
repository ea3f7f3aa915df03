"""The SDK's transport when no answer comes: errors of longops's own hierarchy that name the URL
and how to change it; timeouts and connection limits against a real server that never answers;
and the async twin streaming a download."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from longops import Client
from longops.errors import (
    APIError,
    ClientError,
    InvalidURLError,
    LongopsError,
    RequestTimeoutError,
    ServerUnreachableError,
    TransportError,
)
from tests.support.servers import ThreadServer, free_port
from tests.support.stalling import StallingServer
from tests.support.twin import Twin

NO_RETRY = {"retry": {"attempts": 1}}
FAST_RETRY = {"attempts": 3, "initial_delay": 0.01, "max_delay": 0.02}


def assert_explains(error: LongopsError, url: str) -> None:
    """The message names the URL tried and both ways to point the client elsewhere."""
    text = str(error)
    assert url in text
    assert "base_url=" in text
    assert "LONGOPS_BASE_URL" in text


async def test_nothing_listening(twin: Callable[..., Twin]) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    api = twin(base_url=base, http_options={"retry": FAST_RETRY})
    with pytest.raises(ServerUnreachableError) as info:
        await api.operations.get("operations/abc")
    error = info.value
    assert isinstance(error, LongopsError)
    assert isinstance(error, ConnectionError)  # the builtin, for code that catches that
    assert not isinstance(error, APIError)  # no answer, so no HTTP status
    assert error.url == f"{base}/v1beta/operations/abc"
    assert_explains(error, error.url)
    assert "from base_url=" in str(error)
    assert error.__cause__ is not None  # the HTTP library's own exception, kept


async def test_nothing_listening_names_the_environment_variable_it_came_from(
    twin: Callable[..., Twin], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LONGOPS_BASE_URL", base)
    api = twin(http_options=NO_RETRY)
    with pytest.raises(ServerUnreachableError) as info:
        await api.operations.start("longops.sleep")
    assert f"base URL {base} from LONGOPS_BASE_URL" in str(info.value)
    assert info.value.url.startswith(f"{base}/v1beta/kinds/longops.sleep:start")


async def test_unknown_host(twin: Callable[..., Twin]) -> None:
    base = "http://no-such-host.invalid:8000"
    api = twin(base_url=base, http_options=NO_RETRY)
    with pytest.raises(ServerUnreachableError) as info:
        await api.operations.get("operations/abc")
    assert_explains(info.value, f"{base}/v1beta/operations/abc")


@pytest.mark.parametrize(
    "base_url",
    ["127.0.0.1:8000", "localhost:8000", "ftp://127.0.0.1:8000", "http://", "/v1beta"],
)
def test_a_base_url_that_cannot_be_requested(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused where the client is made, so the mistake shows there, for both twins.
    with pytest.raises(InvalidURLError) as info:
        Client(base_url=base_url)
    assert isinstance(info.value, ValueError)
    assert_explains(info.value, repr(base_url))

    monkeypatch.setenv("LONGOPS_BASE_URL", base_url)
    with pytest.raises(InvalidURLError, match="from LONGOPS_BASE_URL"):
        Client()


async def test_read_timeout(twin: Callable[..., Twin], stalling: StallingServer) -> None:
    api = twin(base_url=stalling.url, http_options={"timeout": 0.3, **NO_RETRY})
    with pytest.raises(RequestTimeoutError) as info:
        await api.operations.get("operations/abc")
    error = info.value
    assert isinstance(error, TimeoutError)  # the builtin
    assert "0.3 s" in str(error)
    assert "timeout" in str(error)
    assert_explains(error, f"{stalling.url}/v1beta/operations/abc")
    assert stalling.accepted == 1


async def test_a_timed_out_get_is_retried(
    twin: Callable[..., Twin], stalling: StallingServer
) -> None:
    # A GET is harmless to repeat, so each attempt goes out (on a new connection: the old one
    # is left in an unknown state); the last failure is raised.
    options = {"timeout": 0.2, "retry": FAST_RETRY}
    api = twin(base_url=stalling.url, http_options=options)
    with pytest.raises(RequestTimeoutError):
        await api.operations.get("operations/abc")
    assert stalling.accepted == FAST_RETRY["attempts"]


async def test_max_connections_caps_the_pool(
    twin: Callable[..., Twin], stalling: StallingServer
) -> None:
    # With one connection allowed and the server holding it (a wait, with its own long
    # timeout), a second request waits for a free connection until its timeout and never
    # opens another.
    options = {"timeout": 0.5, "max_connections": 1, **NO_RETRY}
    api = twin(base_url=stalling.url, http_options=options)
    first = asyncio.ensure_future(api.operations.wait("operations/a", timeout=30))
    while stalling.accepted < 1:
        await asyncio.sleep(0.01)
    with pytest.raises(RequestTimeoutError, match="free connection"):
        await api.operations.get("operations/b")
    assert stalling.accepted == 1
    stalling.close()  # the held connection drops: the wait ends without an answer
    with pytest.raises(TransportError) as info:
        await first
    assert_explains(info.value, f"{stalling.url}/v1beta/operations/a:wait")


async def test_async_transport_streams_a_download(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = make_server(workers=0)
    content = bytes(range(256)) * 20_000  # 5 MiB, several chunks
    client = Client(base_url=server.url)
    try:
        uploaded = await client.aio.files.upload(
            file=content, config={"mime_type": "application/octet-stream"}
        )
        file_id = uploaded.name.removeprefix("files/")
        transport = client.aio._transport
        response = await transport.send(
            "GET", f"files/{file_id}:download", params={"alt": "media"}, stream=True
        )
        assert response.content == b""  # nothing read yet
        chunks = [chunk async for chunk in response.aiter_bytes(1 << 20)]
        await response.aclose()
        assert len(chunks) >= 5
        assert b"".join(chunks) == content

        # An error answer is read in full and raised, streaming or not.
        with pytest.raises(ClientError) as info:
            await transport.send(
                "GET", "files/nosuchfile:download", params={"alt": "media"}, stream=True
            )
        assert info.value.code == 404
        assert await client.aio.files.download(file=uploaded.name) == content
        saved = tmp_path / "saved.bin"
        await client.aio.files.download(file=uploaded.name, destination=saved)
        assert saved.read_bytes() == content
    finally:
        await client.aio.aclose()
        client.close()
