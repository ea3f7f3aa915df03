"""Webhook deliveries through real processes: an API server (in a thread) and
`longops worker` processes, whose dispatchers send to a real HTTP receiver on an
ephemeral port (`tests/support/receiver.py`), on one SQLite file (and, for the kill
-9 case, on PostgreSQL too).

The worker processes read the webhook settings from the environment: retries start
at 50 ms so backoff is seen in seconds, and 127.0.0.1 is allowed as an egress target
(except where the refusal is what is tested)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import orjson
import pytest
from standardwebhooks import Webhook

from longops import Client
from longops.errors import ClientError
from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.receiver import Receiver
from tests.support.servers import Process, ThreadServer, worker_args, worker_ready
from tests.support.waiting import until_sync

KEYS = {"ka": "team-a", "kb": "team-b"}
RETRY_BASE = 0.05


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGOPS_EGRESS_ALLOW", "127.0.0.1/32")
    monkeypatch.setenv("LONGOPS_WEBHOOK_RETRY_BASE_SECONDS", str(RETRY_BASE))
    monkeypatch.setenv("LONGOPS_WEBHOOK_TIMEOUT_SECONDS", "5")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite, unless a test asks for PostgreSQL too (`indirect` parametrization)."""
    with database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture
def api_server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(workers=0, config=ServerConfig(api_keys=KEYS))


@pytest.fixture
def start_worker(api_server: ThreadServer, spawn: Callable[..., Process]) -> Callable[[], Process]:
    def start() -> Process:
        process = spawn(*worker_args(api_server.database_url))
        until_sync(worker_ready(process), what="the worker to start")
        return process

    return start


@pytest.fixture
def client(api_server: ThreadServer) -> Iterator[Client]:
    with Client(base_url=api_server.url, api_key="ka") as client:
        yield client


@pytest.fixture
def other_tenant(api_server: ThreadServer) -> Iterator[Client]:
    with Client(base_url=api_server.url, api_key="kb") as client:
        yield client


def webhook(
    client: Client, receiver: Receiver, events: tuple[str, ...] = ("operation.succeeded",)
) -> tuple[str, str]:
    """A webhook of the client's tenant: its id and secret."""
    made = client.webhooks.create(uri=receiver.url, subscribed_events=list(events))
    assert made.id is not None and made.new_signing_secret is not None
    return made.id, made.new_signing_secret


def finish_one(client: Client) -> str:
    """An operation that succeeds at once; its name once it has."""
    op = client.operations.start("longops.sleep", {"seconds": 0})
    done = client.operations.wait(op, timeout=30)
    assert done.done and done.error is None
    return done.name


def arrived(receiver: Receiver, count: int) -> None:
    until_sync(lambda: len(receiver.requests) >= count, what=f"{count} deliveries")


def test_a_failing_receiver_gets_retries_of_one_id_until_it_answers(
    client: Client, start_worker: Callable[[], Process]
) -> None:
    with Receiver([500, 500, 500]) as failing, Receiver([503], retry_after="1") as busy:
        id, secret = webhook(client, failing)
        webhook(client, busy)
        start_worker()
        name = finish_one(client)
        arrived(failing, 4)
        arrived(busy, 2)

    assert len(set(failing.ids())) == 1
    for request in failing.requests:  # each attempt signed afresh, each verifiable
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "operation.succeeded"
        assert payload["data"]["name"] == name
    [delivery] = client.webhooks.list_deliveries(id)
    assert delivery.id == failing.ids()[0]
    logged = client.webhooks.get_delivery(delivery)
    assert logged.state == "delivered" and logged.attempts is not None
    assert [a.status_code for a in logged.attempts] == [500, 500, 500, 200]
    # Exponential backoff with full jitter: each wait below base * 2^(n-1).
    for n, attempt in enumerate(logged.attempts[:3], start=1):
        assert attempt.attempt_time is not None and attempt.next_attempt_time is not None
        wait = (attempt.next_attempt_time - attempt.attempt_time).total_seconds()
        assert 0 <= wait <= RETRY_BASE * 2 ** (n - 1) + 0.001
    assert logged.attempts[-1].next_attempt_time is None
    # The busy receiver asked for a second: the retry was due a second later.
    [busy_delivery] = [d for d in client.webhooks.list_deliveries() if d.id == busy.ids()[0]]
    first = client.webhooks.get_delivery(busy_delivery).attempts
    assert first is not None and first[0].status_code == 503
    assert first[0].next_attempt_time is not None and first[0].attempt_time is not None
    assert (first[0].next_attempt_time - first[0].attempt_time).total_seconds() >= 0.99


def test_410_disables_the_webhook_and_nothing_more_is_sent(
    client: Client, start_worker: Callable[[], Process]
) -> None:
    with Receiver(then=410) as gone:
        id, _ = webhook(client, gone)
        start_worker()
        finish_one(client)
        arrived(gone, 1)
        until_sync(
            lambda: client.webhooks.get(id).state == "disabled_due_to_failed_deliveries",
            what="the webhook to be disabled",
        )
        finish_one(client)  # ends with no enabled webhook: no event is even written
        [delivery] = client.webhooks.list_deliveries(id)
        assert delivery.state == "failed" and delivery.last_status_code == 410
        assert len(gone.requests) == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_one(
    client: Client, start_worker: Callable[[], Process]
) -> None:
    with Receiver(["hang"]) as receiver:
        id, secret = webhook(client, receiver)
        first = start_worker()
        finish_one(client)
        arrived(receiver, 1)  # the delivery is on its way, unanswered
        first.kill()
        receiver.release()
        start_worker()  # sees the first one dead: takes its delivery over at once
        arrived(receiver, 2)

    assert len(set(receiver.ids())) == 1  # deduplicated by webhook-id: one event
    Webhook(secret).verify(receiver.requests[-1].body, receiver.requests[-1].headers)
    [delivery] = client.webhooks.list_deliveries(id)
    until_sync(
        lambda: client.webhooks.get_delivery(delivery).state == "delivered",
        what="the delivery to be logged",
    )


def test_redelivery_keeps_the_id_and_another_tenant_cannot_see_or_redeliver(
    client: Client, other_tenant: Client, start_worker: Callable[[], Process]
) -> None:
    with Receiver() as receiver:
        id, secret = webhook(client, receiver)
        start_worker()
        finish_one(client)
        arrived(receiver, 1)
        [delivery] = client.webhooks.list_deliveries(id)
        until_sync(lambda: client.webhooks.get_delivery(delivery).state == "delivered")

        for call in (
            lambda: other_tenant.webhooks.get_delivery(delivery),
            lambda: other_tenant.webhooks.redeliver(delivery),
            lambda: other_tenant.webhooks.list_deliveries(id),
            lambda: other_tenant.webhooks.get(id),
        ):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.code == 404
        assert list(other_tenant.webhooks.list_deliveries()) == []

        first = receiver.requests[0]
        until_sync(lambda: int(time.time()) > int(first.headers["webhook-timestamp"]))
        client.webhooks.redeliver(delivery)
        arrived(receiver, 2)

    again = receiver.requests[1]
    assert again.id == first.id
    assert again.headers["webhook-timestamp"] > first.headers["webhook-timestamp"]
    assert again.headers["webhook-signature"] != first.headers["webhook-signature"]
    Webhook(secret).verify(again.body, again.headers)


def test_per_request_uris_get_a_jwt_the_jwks_verifies(
    api_server: ThreadServer, client: Client, start_worker: Callable[[], Process]
) -> None:
    with Receiver() as static, Receiver() as receiver:
        webhook(client, static)  # not told: the request's URIs replace the tenant's webhooks
        start_worker()
        op = client.operations.start(
            "longops.sleep",
            {"seconds": 0},
            webhook_config={"uris": [receiver.url], "user_metadata": {"job": "nightly"}},
        )
        client.operations.wait(op, timeout=30)
        arrived(receiver, 1)

    request = receiver.requests[0]
    token = request.headers["webhook-signature"]
    keys = jwt.PyJWKClient(f"{api_server.url}/.well-known/jwks.json")
    claims = jwt.decode(
        token, keys.get_signing_key_from_jwt(token), algorithms=["RS256"], audience=receiver.url
    )
    assert claims["jti"] == request.id
    assert claims["webhook_timestamp"] == request.headers["webhook-timestamp"]
    assert claims["body_sha256"] == hashlib.sha256(request.body).hexdigest()
    payload = orjson.loads(request.body)
    assert payload["type"] == "operation.succeeded"
    assert payload["data"]["userMetadata"] == {"job": "nightly"}
    assert static.requests == []


def test_a_loopback_receiver_is_refused_unless_allowed(
    client: Client, start_worker: Callable[[], Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LONGOPS_EGRESS_ALLOW")
    with Receiver() as receiver:
        id, _ = webhook(client, receiver)
        start_worker()
        finish_one(client)
        until_sync(
            lambda: [d.state for d in client.webhooks.list_deliveries(id)] == ["failed"],
            what="the delivery to be refused",
        )
        [delivery] = client.webhooks.list_deliveries(id)
        assert delivery.last_status_code is None
        assert delivery.last_error is not None and "refused" in delivery.last_error
        assert receiver.requests == []
