"""Webhook latency on SQLite: an operation's finish → a local receiver has its delivery.

    .venv/bin/python bench/webhooks.py [--quick] [--operations 500] [--no-pin]

longops runs as `longops serve --workers 16` on a fresh SQLite file, with one webhook
of the (open server's) tenant subscribed to `operation.succeeded` and pointing at a
receiver on 127.0.0.1 (an aiohttp app in a process of its own, started by this
script; `LONGOPS_EGRESS_ALLOW=127.0.0.1/32` lets longops reach it). One at a time,
the benchmark starts a `longops.sleep` operation with `{}` (no work) and waits for
the receiver to have its delivery. The latency is the receiver's arrival time minus
the finish time the payload carries (`timestamp`, the worker's clock when it ended
the operation, before the commit): the commit with its outbox row, the dispatcher's
wake-up, expanding the event into a leased delivery, signing, and the POST.

The baseline, in the same run and against the same receiver, is this process
POSTing a body of the same size with a bare HTTP client (one keep-alive connection,
`_common.RawHttpClient`), timed from just before the write to the receiver's arrival
time: the floor of a local HTTP hop into that receiver.

Target: p50 <= 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import orjson
from _common import (
    HOST,
    PYTHON,
    RawHttpClient,
    exit_on_sigterm,
    header,
    longops_command,
    parse_args,
    percentile,
    print_table,
    run_async,
    serve,
    verdict,
)

TARGET_P50_MS = 10.0
WORKERS = 16


# -- the receiver (this script, run with --receiver) -----------------------------


def receiver_main(port: int) -> None:
    """POST /hook records each arrival; GET /next answers with the next one."""
    from aiohttp import web

    arrivals: asyncio.Queue[tuple[float, str | None, bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrivals.put_nowait((time.time(), request.headers.get("x-sent"), body))
        return web.Response(status=200)

    async def next_arrival(request: web.Request) -> web.Response:
        arrived, sent, body = await arrivals.get()
        return web.json_response({"arrived": arrived, "sent": sent, "body": body.decode()})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/next", next_arrival)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


def receiver_command(port: int) -> list[str]:
    return [PYTHON, str(Path(__file__).resolve()), "--receiver", str(port)]


# -- measuring -----------------------------------------------------------------------


async def next_arrival(receiver: RawHttpClient) -> dict[str, object]:
    status, body = await receiver.request("GET", "/next", timeout=30)
    assert status == 200, (status, body)
    found: dict[str, object] = orjson.loads(body)
    return found


async def through_longops(longops_port: int, receiver_port: int, count: int) -> list[float]:
    api, receiver = RawHttpClient(longops_port), RawHttpClient(receiver_port)
    await api.connect()
    await receiver.connect()
    try:
        hook = {
            "uri": f"http://{HOST}:{receiver_port}/hook",
            "subscribed_events": ["operation.succeeded"],
        }
        status, body = await api.request("POST", "/v1/webhooks", orjson.dumps(hook))
        assert status == 200, (status, body)
        latencies = []
        for index in range(count + 10):  # the first 10 warm up
            status, body = await api.request("POST", "/v1beta/kinds/longops.sleep:start", b"{}")
            assert status == 200, (status, body)
            arrival = await next_arrival(receiver)
            payload = orjson.loads(str(arrival["body"]))
            ended = datetime.fromisoformat(payload["timestamp"]).timestamp()
            if index >= 10:
                latencies.append(float(str(arrival["arrived"])) - ended)
        return latencies
    finally:
        await api.close()
        await receiver.close()


class _Sender(RawHttpClient):
    """The raw client, with one header more: when the request was sent."""

    async def request_with_header(self, name: str, value: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        head = (
            f"POST /hook HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{name}: {value}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode("ascii") + body)
        head_bytes = await self._reader.readuntil(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(
            int(line.partition(b":")[2])
            for line in lines[1:]
            if line.partition(b":")[0].strip().lower() == b"content-length"
        )
        return status, await self._reader.readexactly(length)


async def direct(receiver_port: int, count: int, size: int) -> list[float]:
    sender, receiver = _Sender(receiver_port), RawHttpClient(receiver_port)
    await sender.connect()
    await receiver.connect()
    body = b"x" * size
    try:
        latencies = []
        for index in range(count + 10):
            sent = time.time()  # the send time rides in a header of the request itself
            status, _ = await sender.request_with_header("x-sent", repr(sent), body)
            assert status == 200
            arrival = await next_arrival(receiver)
            if index >= 10:
                latencies.append(float(str(arrival["arrived"])) - sent)
        return latencies
    finally:
        await sender.close()
        await receiver.close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=500, help="measured operations")
    timing, args = parse_args(__doc__.splitlines()[0], parser=parser)
    count = 200 if timing.quick else max(args.operations, 200)
    exit_on_sigterm()
    os.environ["LONGOPS_EGRESS_ALLOW"] = "127.0.0.1/32"
    header(f"webhook latency, finish -> receiver ({count} operations, one at a time)")
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        command = longops_command(Path(folder) / "longops.db", WORKERS)
        with serve("receiver", receiver_command) as receiver, serve("longops", command) as longops:
            webhooks = run_async(through_longops(longops.port, receiver.port, count))
            size = 160  # about the bytes of an operation.succeeded payload
            bare = run_async(direct(receiver.port, count, size))
    rows = []
    for label, values in (("longops webhook", webhooks), ("bare POST", bare)):
        ms = [v * 1000 for v in values]
        rows.append([label, len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99)])
    print_table("finish -> receiver", ["case", "n", "p50 ms", "p95 ms", "p99 ms"], rows)
    p50, bare_p50 = rows[0][2], rows[1][2]
    assert isinstance(p50, float) and isinstance(bare_p50, float)
    print(f"  longops / bare p50: {p50 / bare_p50:.1f}x")
    verdict("webhook p50 ms", p50, TARGET_P50_MS, at_least=False)


if __name__ == "__main__":
    main()
